"""Mixed load: streaming chats while long, fresh prompts arrive (someone pastes a document).

    .venv/bin/python -m benchmarks.mixed_load --model DIR [--step-tokens 32,64,128,0] [--llama-server PATH --gguf F] [--out docs/mixed]

Each server runs alone on the machine, 16 slots, T threads: `gpt2onnx serve` once per
--step-tokens value (0: no cap, the engine before chunked prefill), and llama.cpp's
`llama-server` at its defaults when given. Against each, in this order:
- alone: a fresh LONG-token prompt (random ids no server has seen) on the idle server, 1 new
  token: its time to first token (median of ALONE_RUNS);
- mixed: STREAMS greedy streams decode steadily (forced to full length); after STEADY_S the
  long prompts arrive one after another, each fresh; the streams' chunk times give their steady
  median gap (before the first long prompt) and their longest gap while a long prompt is being
  admitted (from its sending to its first token); the long prompts' TTFT under load;
- short prompts: serving.py's workload at 16 clients (32-token prompts, 64 tokens): aggregate tok/s.
Reports the longest gap / steady median gap, the long TTFT under load / alone, and tok/s; writes
mixed.md and mixed.json into --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from . import serving
from .machine import cpu_name

STREAMS, STREAM_TOKENS = 8, 600  # the steady chats, and how long each runs (past every long prompt)
LONG, LONG_PROMPTS, ALONE_RUNS = 900, 3, 3  # the pasted document's tokens, how many arrive, alone repeats
STEADY_S, BETWEEN_S = 2.0, 1.0  # steady state before the first long prompt, and between them


def _fresh(seed: int, n: int) -> list[int]:
    return np.random.default_rng(seed).integers(0, 50256, n).tolist()  # ids no server has cached


async def _first_token(client: httpx.AsyncClient, url: str, ids: list[int], extra: dict) -> tuple[float, float]:
    """(sent, first token) times of a one-token request for `ids`."""
    sent = time.perf_counter()
    body = {"prompt": ids, "max_tokens": 1, "temperature": 0, "stream": True, **extra}
    async with client.stream("POST", url, json=body) as r:
        async for line in r.aiter_lines():
            if line.startswith("data: {") and json.loads(line[6:]).get("choices"):
                return sent, time.perf_counter()
    raise RuntimeError(f"no token for the long prompt (HTTP {r.status_code})")


async def _stream(client: httpx.AsyncClient, url: str, seed: int, extra: dict, stamps: list[float]) -> None:
    body = {"prompt": _fresh(seed, 16), "max_tokens": STREAM_TOKENS, "temperature": 0, "stream": True, **extra}
    async with client.stream("POST", url, json=body) as r:
        async for line in r.aiter_lines():
            if line.startswith("data: {") and json.loads(line[6:]).get("choices"):
                stamps.append(time.perf_counter())


async def mixed(url: str, extra: dict) -> dict:
    limits = httpx.Limits(max_connections=STREAMS + 4)
    async with httpx.AsyncClient(timeout=httpx.Timeout(120), limits=limits) as client:
        alone = [await _first_token(client, url, _fresh(100 + i, LONG), extra) for i in range(ALONE_RUNS)]
        stamps: list[list[float]] = [[] for _ in range(STREAMS)]
        streams = [asyncio.create_task(_stream(client, url, i, extra, stamps[i])) for i in range(STREAMS)]
        while min(map(len, stamps)) < 2:  # every stream has begun
            await asyncio.sleep(0.01)
        await asyncio.sleep(STEADY_S)
        admissions = []
        for i in range(LONG_PROMPTS):
            admissions.append(await _first_token(client, url, _fresh(200 + i, LONG), extra))
            await asyncio.sleep(BETWEEN_S)
        for task in streams:
            task.cancel()
        await asyncio.gather(*streams, return_exceptions=True)
    first = admissions[0][0]
    steady = [b - a for s in stamps for a, b in zip(s, s[1:]) if b < first]
    during = [b - a for s in stamps for a, b in zip(s, s[1:]) if any(sent <= b and a <= got for sent, got in admissions)]
    ttft_alone = statistics.median(got - sent for sent, got in alone)
    ttft_mixed = statistics.median(got - sent for sent, got in admissions)
    median_gap = statistics.median(steady)
    return {
        "steady_gap_ms": 1e3 * median_gap, "longest_gap_ms": 1e3 * max(during), "gap_ratio": max(during) / median_gap,
        "ttft_alone_ms": 1e3 * ttft_alone, "ttft_mixed_ms": 1e3 * ttft_mixed, "ttft_ratio": ttft_mixed / ttft_alone,
    }


def run(server: serving.Server, port: int, log: Path) -> dict:
    proc = subprocess.Popen(server.command, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        serving.wait_ready(base, proc)
        asyncio.run(serving.level(f"{base}/v1/completions", server.extra, 2))  # warm-up
        figures = asyncio.run(mixed(f"{base}/v1/completions", server.extra))
        figures["tok_s_16"] = asyncio.run(serving.level(f"{base}/v1/completions", server.extra, 16))["tok_s"]
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    print(f"  {server.name:22s} gap {figures['longest_gap_ms']:7.0f} / {figures['steady_gap_ms']:5.1f} ms = {figures['gap_ratio']:5.1f}x  "
          f"TTFT {figures['ttft_mixed_ms']:6.0f} / {figures['ttft_alone_ms']:6.0f} ms = {figures['ttft_ratio']:4.2f}x  "
          f"short-prompt {figures['tok_s_16']:6.1f} tok/s", flush=True)
    return figures


def servers(args, port: int) -> list[serving.Server]:
    threads = str(args.threads)
    out = []
    for budget in [int(b) for b in args.step_tokens.split(",")]:
        command = [sys.executable, "-m", "gpt2onnx.cli", "serve", "--model", args.model, "--port", str(port), "--slots", str(serving.SLOTS),
                   "--max-queue", "256", "--threads", threads, "--provider", "cpu", "--step-tokens", str(budget)]
        out.append(serving.Server(f"gpt2onnx step-tokens {budget or 'no cap'}", "fp32", command, {"min_new_tokens": STREAM_TOKENS}))
    if args.llama_server:  # its defaults, but for the slots, the context they share and the threads
        command = [args.llama_server, "-m", args.gguf, "--host", "127.0.0.1", "--port", str(port), "-np", str(serving.SLOTS),
                   "-c", str(serving.SLOTS * 1024), "-t", threads, "-tb", threads, "--no-webui", "--threads-http", str(STREAMS + 8)]
        out.append(serving.Server("llama.cpp f32 (defaults)", "fp32", command, {"ignore_eos": True}))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mixed_load", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a gpt2onnx export (the random 124M fp32 one)")
    parser.add_argument("--step-tokens", default="32,64,128,0", help="the budgets to run, comma-separated (0: no cap)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--llama-server", default=None)
    parser.add_argument("--gguf", default=None, help="the same checkpoint as an f32 GGUF, for llama-server")
    parser.add_argument("--port", type=int, default=8391)
    parser.add_argument("--out", default="docs/mixed")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = f"{cpu_name()}, {args.threads} threads"
    print(f"mixed load on {machine}: {STREAMS} streams, {LONG_PROMPTS} fresh {LONG}-token prompts", flush=True)
    results = {s.name: run(s, args.port, out / f"{s.name.replace(' ', '_')}.log") for s in servers(args, args.port)}
    (out / "mixed.json").write_text(json.dumps({"machine": machine, "results": results}, indent=1))
    rows = [f"| {name} | {r['steady_gap_ms']:.1f} | {r['longest_gap_ms']:.0f} | {r['gap_ratio']:.1f}x | {r['ttft_alone_ms']:.0f} | "
            f"{r['ttft_mixed_ms']:.0f} | {r['ttft_ratio']:.2f}x | {r['tok_s_16']:.1f} |" for name, r in results.items()]
    (out / "mixed.md").write_text(
        f"# Mixed load, {time.strftime('%Y-%m-%d')}, {machine}\n\n{STREAMS} greedy streams; {LONG_PROMPTS} fresh {LONG}-token prompts arrive one after another.\n\n"
        "| server | steady gap ms | longest gap during an admission ms | ratio | long TTFT alone ms | long TTFT under load ms | ratio | short-prompt tok/s at 16 clients |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- |\n" + "\n".join(rows) + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
