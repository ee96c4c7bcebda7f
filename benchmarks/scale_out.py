"""Scale-out benchmark: `gpt2onnx serve --ray` with 1 and 2 replicas under the same load,
each replica on one core, against the plain single-process server; and from the
per-replica throughput, the replicas and cores for a target request rate.

    .venv/bin/python -m benchmarks.scale_out --work /tmp/bench-work [--precision int8] [--out docs/scale-out]

The model is the speed benchmark's export of the random 124M checkpoint (run it
first). Deployments, in ROUNDS interleaved rounds (each alone on the machine):
- serve: `gpt2onnx serve --threads 1 --slots 8` (no Ray: what Ray costs);
- ray-1, ray-2: `gpt2onnx serve --ray --replicas R --threads 1 --slots 8`: R
  replicas of one core each (Ray's num_cpus = threads = 1), 8 slots each.
The load is benchmarks.serving's: CLIENTS streaming clients on loopback, each
sending requests back to back: a 32-token random prompt, NEW_TOKENS new tokens,
greedy and forced to full length. Deployments log to $TMPDIR/gpt2onnx-scale-out.log.
The load generator, Ray's proxy and its
controller share the machine's cores with the replicas, so on a 2-core VM the
2-replica figure is a floor. Writes scale_out.md and scale_out.json into --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


from .machine import machine
from .serving import level, wait_ready

NEW_TOKENS, SLOTS, CLIENTS, ROUNDS = 128, 8, 16, 2
TARGET_RPS = (10, 100, 1000)
ITL_P99_MS = 100.0  # the capacity table's latency target: every stream gets >= 10 tokens/s at p99
DEPLOYMENTS = {"serve": [], "ray-1": ["--ray", "--replicas", "1"], "ray-2": ["--ray", "--replicas", "2"]}


def measure(name: str, model: Path, port: int, log: Path) -> dict:
    command = [sys.executable, "-m", "gpt2onnx.cli", "serve", "--model", str(model), "--port", str(port), "--threads", "1",
               "--slots", str(SLOTS), "--max-queue", "256", "--provider", "cpu", *DEPLOYMENTS[name]]
    with open(log, "a") as err:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        try:
            wait_ready(f"http://127.0.0.1:{port}", proc, int(name[-1]) if name.startswith("ray") else 1)
            url, extra = f"http://127.0.0.1:{port}/v1/completions", {"max_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS}
            asyncio.run(level(url, extra, 4))  # warm-up: every replica's first steps
            return asyncio.run(level(url, extra, CLIENTS))
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def capacity(per_replica_rps: float) -> list[str]:
    rows = ["| requests/s | replicas | replica cores |", "| --- | --- | --- |"]
    for rps in TARGET_RPS:
        replicas = math.ceil(rps / per_replica_rps)
        rows.append(f"| {rps:,} | {replicas:,} | {replicas:,} |")
    return rows


def report(runs: dict[str, list[dict]], machine: str, precision: str) -> tuple[str, list[str]]:
    best = {name: max(figures, key=lambda f: f["tok_s"]) for name, figures in runs.items()}
    lines = ["# gpt2onnx scale-out benchmark", "", f"`python -m benchmarks.scale_out`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. {machine}", "",
             f"Random 124M GPT-2, {precision}; {SLOTS} slots and 1 core per replica; {CLIENTS} streaming clients; prompt 32 random ids, "
             f"{NEW_TOKENS} new tokens (greedy, forced); {ROUNDS} interleaved rounds, the better one kept.", "",
             "| deployment | rounds tok/s | tok/s | requests/s | TTFT p50 / p99 ms | ITL p50 / p99 ms | errors |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, f in best.items():
        rounds = " / ".join(f"{g['tok_s']:.1f}" for g in runs[name])
        lines.append(f"| {name} | {rounds} | {f['tok_s']:.1f} | {f['tok_s'] / NEW_TOKENS:.2f} | {f['ttft_p50_ms']:.0f} / {f['ttft_p99_ms']:.0f} | "
                     f"{f['itl_p50_ms']:.1f} / {f['itl_p99_ms']:.1f} | {sum(g['errors'] for g in runs[name])} |")
    figures = []
    if "ray-1" in best and "ray-2" in best:
        figures.append(f"ray-2 / ray-1 aggregate tok/s: {best['ray-2']['tok_s'] / best['ray-1']['tok_s']:.2f}x (2 replicas on 2 cores; ideal 2x)")
    if "serve" in best and "ray-1" in best:
        figures.append(f"ray-1 / serve tok/s: {best['ray-1']['tok_s'] / best['serve']['tok_s']:.2f}x (what Ray's proxy costs one replica)")
    if "ray-1" in best:  # one replica with its slots full, and the other core left to the proxy and the clients
        f = best["ray-1"]
        per_replica = f["tok_s"] / NEW_TOKENS
        met = f["itl_p99_ms"] <= ITL_P99_MS
        figures.append(f"{'PASS' if met else 'FAIL'}  ray-1 (slots full) ITL p99 {f['itl_p99_ms']:.1f} ms (target <= {ITL_P99_MS:.0f} ms: every stream >= {1e3 / ITL_P99_MS:.0f} tokens/s)")
        figures.append(f"per replica: {per_replica:.2f} requests/s of {NEW_TOKENS}-token completions, {f['tok_s']:.0f} tok/s")
        lines += ["", f"Replicas for {NEW_TOKENS}-token completions at the measured {per_replica:.2f} requests/s per replica (ray-1: one core, "
                  f"{SLOTS} slots, all busy, ITL p99 {f['itl_p99_ms']:.0f} ms <= {ITL_P99_MS:.0f} ms), assuming each replica has its own core "
                  "and the proxies and clients run on others:", "", *capacity(per_replica)]
    lines += ["", "```", *figures, "```", ""]
    return "\n".join(lines), figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, help="the speed benchmark's --work folder (its gpt2onnx exports)")
    parser.add_argument("--precision", choices=["fp32", "int8"], default="int8")
    parser.add_argument("--out", default="docs/scale-out")
    parser.add_argument("--port", type=int, default=8571)
    parser.add_argument("--report-only", action="store_true", help="rewrite scale_out.md from --out's scale_out.json")
    args = parser.parse_args()
    model = Path(args.work) / f"gpt2onnx-{args.precision}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict]] = json.loads((out / "scale_out.json").read_text()) if args.report_only else {name: [] for name in DEPLOYMENTS}
    port = args.port
    for round_ in range(0 if args.report_only else ROUNDS):
        for name in DEPLOYMENTS:
            port += 1  # a fresh port each: a stopped proxy's socket may linger
            figures = measure(name, model, port, Path(tempfile.gettempdir()) / "gpt2onnx-scale-out.log")
            runs[name].append(figures)
            print(f"round {round_ + 1} {name:6s} {figures['tok_s']:7.1f} tok/s  TTFT p50 {figures['ttft_p50_ms']:6.0f} ms  "
                  f"ITL p50/p99 {figures['itl_p50_ms']:.1f}/{figures['itl_p99_ms']:.1f} ms  errors {figures['errors']}", flush=True)
    host = machine(1)
    markdown, figures = report(runs, f"{host['cpu']}, {host['cores']} cores, commit {host['gpt2onnx_commit']}.", args.precision)
    (out / "scale_out.md").write_text(markdown)
    (out / "scale_out.json").write_text(json.dumps(runs, indent=1))
    print("\n".join(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
