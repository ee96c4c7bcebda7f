"""The run's report in Markdown: date, CPU, versions, a pass/fail table, each client's code and
output, the request and the server's error of each failure, and every request shape each client
sent. A result is one call's dict from the run (call, streamed, ok, rc, stdout, stderr, seconds,
requests: the proxy's log of it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from .calls import Client, Setup

LITERAL_KEYS = {"type", "role", "stream", "include_usage"}  # values shown as sent, not as their type


def shape(value, key: str = "") -> str:
    """A body's structure: each field with its type (str, int, float, ...), a list as its distinct
    element shapes joined by |; null, booleans and the values of LITERAL_KEYS as sent."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {shape(v, k)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + " | ".join(dict.fromkeys(shape(v, key) for v in value)) + "]"
    if value is None or isinstance(value, bool) or key in LITERAL_KEYS:
        return json.dumps(value)
    return type(value).__name__


def shapes(results: list[dict]) -> list[tuple[str, str, list[str]]]:
    """(endpoint, shape, calls that sent it) for each distinct request shape."""
    out: dict[tuple[str, str], list[str]] = {}
    for r in results:
        for q in r["requests"]:
            if q["method"] == "POST":
                calls = out.setdefault((q["path"], shape(q["body"])), [])
                if r["call"] not in calls:
                    calls.append(r["call"])
    return [(path, s, calls) for (path, s), calls in out.items()]


def server_error(request: dict) -> str:
    try:
        return json.loads(request["response"])["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return request["response"][:300].strip()


def failure(result: dict) -> str:
    """Why a call failed, in a line: the first refused request's error, or the program's last words."""
    bad = [q for q in result["requests"] if q["status"] >= 400]
    if bad:
        return f"HTTP {bad[0]['status']}: {server_error(bad[0])}"
    if not result["requests"]:
        return "no request reached the server: " + (result["stderr"].strip().splitlines() or ["?"])[-1][:200]
    return "the program failed after the server answered: " + (result["stderr"].strip().splitlines() or ["?"])[-1][:200]


def _fence(text: str, lang: str = "") -> list[str]:
    return [f"```{lang}", text.rstrip("\n"), "```"]


def cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.SubprocessError, StopIteration):
        return "unknown"


def _header(setup: Setup, server_command: str, server_code: str, runs) -> list[str]:
    passed = sum(r["ok"] for _, results in runs for r in results)
    total = sum(len(results) for _, results in runs)
    python = ", ".join(f"{k}=={v}" for k, v in setup.python.items())
    node = f"; .cache/clients-node: node {setup.node['node']}, openai@{setup.node['openai']}" if setup.node else ""
    return ["# Real OpenAI clients against gpt2onnx serve", "",
            f"`python -m benchmarks.clients {' '.join(sys.argv[1:])}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. "
            f"CPU: {cpu()}, {os.cpu_count()} cores.", "",
            f"Server: `{server_command}` (the shipped model), {server_code}. Every client talks to it through a logging reverse proxy "
            "on another loopback port (benchmarks/clients/proxy.py's LoggingProxy), which records each request body and each answer. "
            "A call passes when its program exits 0 and every request it made was answered below 400. "
            "A streamed call prints the text it put together and how many chunks (guidance: model states) it got.", "",
            f"Client environments: .cache/clients-venv (Python {sys.version.split()[0]}): {python}{node}.", "",
            f"**{passed} of {total} calls passed.**", ""]


def _table(runs) -> list[str]:
    lines = ["| client | versions | call | streamed | result | server's answer |", "| --- | --- | --- | --- | --- | --- |"]
    for client, results in runs:
        for r in results:
            answer = "200" if r["ok"] else failure(r).replace("|", "\\|")
            lines.append(f"| {client.name} | {client.versions} | {r['call']} | {'yes' if r['streamed'] else 'no'} | "
                         f"{'PASS' if r['ok'] else 'FAIL'} | {answer} |")
    return lines


def _client_section(client: Client, results: list[dict]) -> list[str]:
    """What the client ran, then each call's output; a failure's refused requests and the server's answers."""
    lines = ["", f"## {client.name}", "", f"Versions: {client.versions}."]
    for title, lang, text in client.code:
        lines += ["", f"{title}:", "", *_fence(text, lang)]
    for r in results:
        lines += ["", f"### {client.name}: {r['call']} — {'PASS' if r['ok'] else 'FAIL'} ({r['seconds']} s)", ""]
        if r["stdout"].strip():
            lines += ["Output:", "", *_fence(r["stdout"].strip()[:1500])]
        if r["ok"]:
            continue
        for q in r["requests"]:
            if q["status"] >= 400:
                lines += ["", f"Request `{q['method']} {q['path']}` (User-Agent `{q['user_agent']}`):", "",
                          *_fence(json.dumps(q["body"], indent=1), "json"),
                          "", f"Server's answer, HTTP {q['status']}:", "", *_fence(q["response"].strip()[:1500], "json")]
        if r["stderr"].strip():
            lines += ["", "The program's last lines on stderr:", "", *_fence("\n".join(r["stderr"].strip().splitlines()[-8:])[:2000])]
    return lines


def _shapes_section(runs) -> list[str]:
    lines = ["", "## Request shapes", "",
             "Every distinct request body each client sent (field: type; booleans, null and the values of "
             f"{', '.join(sorted(LITERAL_KEYS))} as sent), with the calls that sent it.", ""]
    for client, results in runs:
        agents = sorted({q["user_agent"] for r in results for q in r["requests"]})
        lines += [f"### {client.name}", "", f"User-Agent: {', '.join(f'`{a}`' for a in agents)}", ""]
        lines += [f"- `POST {path}` ({', '.join(calls)}): `{s}`" for path, s, calls in shapes(results)]
        lines.append("")
    return lines


def report(setup: Setup, runs: list[tuple[Client, list[dict]]], server_command: str, server_code: str) -> str:
    lines = _header(setup, server_command, server_code, runs) + _table(runs)
    for client, results in runs:
        lines += _client_section(client, results)
    return "\n".join(lines + _shapes_section(runs))
