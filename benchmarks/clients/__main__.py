"""`python -m benchmarks.clients`: the options and the run: the environments, the server behind
the logging proxy, each client's calls one by one as subprocesses, then the report and the raw log."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from .calls import CLIENTS, MODEL, Call, Client, Setup, openai_node
from .envs import CACHE, REPO, VENV, node_env, python_env
from .proxy import LoggingProxy
from .report import failure, report
from .server import free_port, server_tree, start_server, stop_server, work_tree_commit

CALL_TIMEOUT_S = 180


def client_env(client: Client, setup: Setup) -> dict[str, str]:
    """The caller's environment, less proxies and keys, plus where the server is."""
    drop = {"http_proxy", "https_proxy", "all_proxy", "openai_api_key", "openai_base_url", "openai_api_base", "gpt2onnx_api_key"}
    env = {k: v for k, v in os.environ.items() if k.lower() not in drop and not k.startswith("VIRTUAL_ENV")}
    env.update(NO_PROXY="127.0.0.1,localhost", GPT2ONNX_BASE_URL=setup.base_url, GPT2ONNX_MODEL=MODEL,
               PATH=f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}", **client.env)
    return env


def run_call(client: Client, call: Call, env: dict, proxy: LoggingProxy) -> dict:
    proxy.tag = f"{client.name} / {call.name}"
    start = time.perf_counter()
    try:
        p = subprocess.run(call.argv, env=env, capture_output=True, text=True, timeout=CALL_TIMEOUT_S, stdin=subprocess.DEVNULL)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out, err = "timeout", _text(e.stdout), _text(e.stderr) + f"\n(killed after {CALL_TIMEOUT_S} s)"
    seconds = time.perf_counter() - start
    requests = proxy.take()
    ok = rc == 0 and bool(requests) and all(r["status"] < 400 for r in requests)
    return {"call": call.name, "streamed": call.streamed, "ok": ok, "rc": rc, "stdout": out, "stderr": err,
            "seconds": round(seconds, 1), "requests": requests}


def _text(b) -> str:
    return b.decode("utf-8", "replace") if isinstance(b, bytes) else (b or "")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.clients",
                                     description="Real OpenAI clients against `gpt2onnx serve`: a recorded run of each one's plain and streamed calls.")
    parser.add_argument("--out", default="docs/clients.md")
    parser.add_argument("--only", default=None, help="comma-separated client functions, e.g. openai_python,guidance")
    parser.add_argument("--server-rev", metavar="REV", default=None,
                        help="serve a commit's code (e.g. HEAD) instead of the work tree's: how the committed server does")
    args = parser.parse_args()
    chosen = [f for f in CLIENTS if args.only is None or f.__name__ in args.only.split(",")]
    CACHE.mkdir(exist_ok=True)
    python = python_env()
    node = node_env() if openai_node in chosen else {}
    tree, server_code = None, f"the work tree's code ({work_tree_commit()})"
    if args.server_rev:
        tree, sha = server_tree(args.server_rev)
        server_code = f"the code of commit {sha} (`--server-rev {args.server_rev}`)"
    port = free_port()
    print(f"clients: gpt2onnx serve on 127.0.0.1:{port}, {server_code}", flush=True)
    server = start_server(port, CACHE / "clients-server.log", tree)
    proxy = LoggingProxy(port, CALL_TIMEOUT_S)
    setup = Setup(f"http://127.0.0.1:{proxy.port}/v1", python, node)
    runs = []
    try:
        for make in chosen:
            client = make(setup)
            env = client_env(client, setup)
            results = []
            for call in client.calls:
                results.append(run_call(client, call, env, proxy))
                r = results[-1]
                print(f"  {client.name:22s} {call.name:18s} {'PASS' if r['ok'] else 'FAIL'}  {'' if r['ok'] else failure(r)[:150]}", flush=True)
            runs.append((client, results))
    finally:
        proxy.close()
        stop_server(server)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report(setup, runs, f"gpt2onnx serve --host 127.0.0.1 --port {port}", server_code))
    raw = CACHE / f"{out.stem}-log.json"  # every call's output, every request and answer
    raw.write_text(json.dumps([{"client": c.name, "versions": c.versions, "results": rs} for c, rs in runs], indent=1))
    print(f"clients: wrote {out}; every request and answer: {raw.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
