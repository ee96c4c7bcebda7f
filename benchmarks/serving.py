"""Serving benchmark: `gpt2onnx serve` under concurrent streaming clients, against llama.cpp's
`llama-server` on the same weights, in one run.

    .venv/bin/python -m benchmarks.serving --work /tmp/bench-work [--llama-server PATH --gguf-f32 F --gguf-q8 Q] [--out docs/serving]

Servers (each alone on the machine while it is measured, 16 slots, T threads):
- gpt2onnx fp32 / int8: `gpt2onnx serve --model WORK/gpt2onnx-fp32|int8 --slots 16`
  (the speed benchmark's exports of the random 124M checkpoint: run it first);
- llama.cpp f32 / q8_0 (when --llama-server is given): `llama-server -np 16` on a
  GGUF of the same checkpoint (../shared/toolchain-notes.md says how to build one).

The load generator is async httpx on loopback: at each concurrency C (1, 4, 16,
64), C clients each send REQUESTS_PER_CLIENT streaming /v1/completions requests
one after another: a 32-token random-id prompt, 64 new tokens, greedy, forced to
full length (gpt2onnx's min_new_tokens, llama.cpp's ignore_eos). Per level it
reports aggregate tokens/s, time to first token p50/p99, inter-token latency
p50/p99 (the gaps between a stream's chunks) and errors. Writes serving.md and
serving.json into --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from .machine import cpu_name

LEVELS = (1, 4, 16, 64)
REQUESTS_PER_CLIENT = 2  # at concurrency 1: 4 requests (see _requests)
PROMPT_TOKENS, NEW_TOKENS, SLOTS = 32, 64, 16
READY_S = 300
STALL_S = 30  # seconds a stream may go without a byte before it counts as an error


@dataclass(frozen=True)
class Server:
    name: str
    precision: str  # what it is compared at: fp32 or 8-bit
    command: list[str]
    extra: dict  # request fields that force full-length generation


def servers(args, port: int) -> list[Server]:
    work, threads = Path(args.work), str(args.threads)
    out = [
        Server(f"gpt2onnx-{p}", "fp32" if p == "fp32" else "8-bit",
               [sys.executable, "-m", "gpt2onnx.cli", "serve", "--model", str(work / f"gpt2onnx-{p}"), "--port", str(port),
                "--slots", str(SLOTS), "--max-queue", "256", "--threads", threads, "--provider", "cpu"], {"min_new_tokens": NEW_TOKENS})
        for p in ("fp32", "int8")
    ]
    if args.llama_server:
        for gguf, name, precision in ((args.gguf_f32, "llama.cpp-f32", "fp32"), (args.gguf_q8, "llama.cpp-q8_0", "8-bit")):
            if gguf:
                command = [args.llama_server, "-m", gguf, "--host", "127.0.0.1", "--port", str(port), "-np", str(SLOTS),
                           "-c", str(SLOTS * 1024), "-t", threads, "-tb", threads, "--no-webui",
                           "--threads-http", str(max(LEVELS) + 8)]  # one HTTP thread per streaming client, or they wait
                out.append(Server(name, precision, command, {"ignore_eos": True}))
    return out


def _requests(concurrency: int) -> int:
    return max(4, concurrency * REQUESTS_PER_CLIENT)


async def _one(client: httpx.AsyncClient, url: str, body: dict) -> dict:
    start = time.perf_counter()
    stamps, tokens = [], 0
    async with client.stream("POST", url, json=body) as r:
        if r.status_code != 200:
            await r.aread()
            return {"error": r.status_code}
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            if chunk.get("choices") and chunk["choices"][0].get("text"):
                stamps.append(time.perf_counter())
    return {"start": start, "stamps": stamps, "tokens": tokens or len(stamps)}


async def level(url: str, extra: dict, concurrency: int) -> dict:
    """C clients, each sending its requests back to back; the figures of the level."""
    total = _requests(concurrency)
    rng = np.random.default_rng(concurrency)
    prompts = rng.integers(0, 50256, (total, PROMPT_TOKENS)).tolist()  # [requests, prompt]
    queue = list(range(total))
    results = []

    async def client_loop(client):
        while queue:
            i = queue.pop()
            body = {"prompt": prompts[i], "max_tokens": NEW_TOKENS, "temperature": 0, "stream": True,
                    "stream_options": {"include_usage": True}, **extra}
            try:
                results.append(await _one(client, url, body))
            except httpx.HTTPError as e:
                results.append({"error": type(e).__name__})

    limits = httpx.Limits(max_connections=concurrency)
    # A stream silent for STALL_S counts as an error (llama-server 0c1e570 stopped answering at 64 clients here).
    async with httpx.AsyncClient(timeout=httpx.Timeout(STALL_S), limits=limits) as client:
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    ok = [r for r in results if "error" not in r]
    ttft = [1e3 * (r["stamps"][0] - r["start"]) for r in ok if r["stamps"]] or [float("nan")]
    itl = [1e3 * (b - a) for r in ok for a, b in zip(r["stamps"], r["stamps"][1:])] or [float("nan")]
    return {
        "concurrency": concurrency, "requests": total, "errors": len(results) - len(ok),
        "tokens": sum(r["tokens"] for r in ok), "tok_s": sum(r["tokens"] for r in ok) / wall,
        "ttft_p50_ms": float(np.percentile(ttft, 50)), "ttft_p99_ms": float(np.percentile(ttft, 99)),
        "itl_p50_ms": float(np.percentile(itl, 50)), "itl_p99_ms": float(np.percentile(itl, 99)),
    }


def wait_ready(base: str, proc: subprocess.Popen, replicas: int = 1) -> None:
    """Until GET /health answers 200 from `replicas` distinct replicas (Ray; one without it)."""
    seen: set = set()
    deadline = time.monotonic() + READY_S
    while len(seen) < replicas:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited {proc.returncode}: {proc.stderr.read()[-2000:] if proc.stderr else ''}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not become ready in {READY_S} s")
        try:
            r = httpx.get(f"{base}/health", timeout=2)
            if r.status_code == 200:
                seen.add(r.json().get("replica", "single"))
                continue
        except httpx.TransportError:
            pass
        time.sleep(0.2)


def measure(server: Server, port: int, levels: tuple[int, ...] = LEVELS, log: Path | None = None) -> list[dict]:
    """The server started, warmed up with 2 clients, each of `levels` measured, stopped. `log`: a file
    for its output (a long run's logs would fill a pipe nobody reads, and stall it); a failed start's
    message then ends with the log's tail."""
    env = {k: v for k, v in os.environ.items() if k != "GPT2ONNX_API_KEY"}  # loopback, no key: the load generator sends none
    sink = log.open("w") if log else None
    proc = subprocess.Popen(server.command, stdout=sink or subprocess.DEVNULL, stderr=sink or subprocess.PIPE, text=True, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_ready(base, proc)
        except RuntimeError as e:
            if log is None:
                raise
            raise RuntimeError(f"{e}; log: {log.read_text()[-300:].strip()}") from None
        asyncio.run(level(f"{base}/v1/completions", server.extra, 2))  # warm-up
        out = []
        for c in levels:
            figures = asyncio.run(level(f"{base}/v1/completions", server.extra, c))
            print(f"  {server.name:16s} C={c:<3d} {figures['tok_s']:7.1f} tok/s  TTFT p50 {figures['ttft_p50_ms']:7.1f} ms  "
                  f"ITL p50/p99 {figures['itl_p50_ms']:.1f}/{figures['itl_p99_ms']:.1f} ms  errors {figures['errors']}", flush=True)
            out.append(figures)
        return out
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        if sink:
            sink.close()


def report(results: dict[str, list[dict]], precisions: dict[str, str], machine: str) -> tuple[str, list[str]]:
    lines = ["# gpt2onnx serving benchmark", "", f"`python -m benchmarks.serving`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. {machine}", "",
             f"{SLOTS} slots, prompt {PROMPT_TOKENS} random ids, {NEW_TOKENS} new tokens (greedy, forced), streaming, loopback. "
             f"An error is a non-200 answer or a stream silent for {STALL_S} s; tok/s counts the tokens of the requests that succeeded.", "",
             "| server | clients | tok/s | TTFT p50 / p99 ms | ITL p50 / p99 ms | errors |", "| --- | --- | --- | --- | --- | --- |"]
    for name, levels in results.items():
        for f in levels:
            lines.append(f"| {name} | {f['concurrency']} | {f['tok_s']:.1f} | {f['ttft_p50_ms']:.1f} / {f['ttft_p99_ms']:.1f} | "
                         f"{f['itl_p50_ms']:.1f} / {f['itl_p99_ms']:.1f} | {f['errors']} |")
    targets = []
    fp32 = {f["concurrency"]: f for f in results.get("gpt2onnx-fp32", [])}
    if 1 in fp32 and 16 in fp32:
        scale = fp32[16]["tok_s"] / fp32[1]["tok_s"]
        itl = fp32[16]["itl_p99_ms"] / fp32[1]["itl_p99_ms"]
        targets.append(f"{'PASS' if scale >= 4 else 'FAIL'}  fp32 aggregate tok/s at 16 clients / 1 client: {scale:.2f}x (target >= 4x)")
        targets.append(f"{'PASS' if itl <= 3 else 'FAIL'}  fp32 p99 inter-token latency at 16 / 1: {itl:.2f}x (target <= 3x)")
    ours = [n for n in results if n.startswith("gpt2onnx")]  # every level stays under its --max-queue 256
    errors = sum(f["errors"] for n in ours for f in results[n])
    targets.append(f"{'PASS' if errors == 0 else 'FAIL'}  gpt2onnx errors below the queue limit: {errors} (target 0)")
    for ours in ("gpt2onnx-fp32", "gpt2onnx-int8"):
        theirs = next((n for n in results if n.startswith("llama.cpp") and precisions[n] == precisions[ours]), None)
        if ours in results and theirs:
            for f, g in zip(results[ours], results[theirs]):
                ratio = f["tok_s"] / g["tok_s"]
                targets.append(f"{'PASS' if ratio >= 1 else 'FAIL'}  {ours} / {theirs} aggregate tok/s at {f['concurrency']} clients: {ratio:.2f}x (goal >= 1.0)")
    lines += ["", "```", *targets, "```", ""]
    return "\n".join(lines), targets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, help="the speed benchmark's --work folder (its gpt2onnx exports)")
    parser.add_argument("--out", default="docs/serving")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--port", type=int, default=8471)
    parser.add_argument("--llama-server", default=None)
    parser.add_argument("--gguf-f32", default=None)
    parser.add_argument("--gguf-q8", default=None)
    parser.add_argument("--only", default=None, help="comma-separated server names")
    parser.add_argument("--report-only", action="store_true", help="rewrite serving.md from --out's serving.json")
    args = parser.parse_args()
    chosen = [s for s in servers(args, args.port) if args.only is None or s.name in args.only.split(",")]
    results = json.loads((Path(args.out) / "serving.json").read_text()) if args.report_only else {}
    for i, server in enumerate([] if args.report_only else chosen):
        print(f"{server.name}:", flush=True)
        port = args.port + i  # a fresh port each: a stopped server's socket may linger
        results[server.name] = measure(Server(server.name, server.precision, [str(port) if a == str(args.port) else a for a in server.command], server.extra), port)
    cpu = cpu_name()
    markdown, targets = report(results, {s.name: s.precision for s in chosen}, f"{cpu}, {os.cpu_count()} cores, {args.threads} threads per server.")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "serving.md").write_text(markdown)
    (out / "serving.json").write_text(json.dumps(results, indent=1))
    print("\n".join(targets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
