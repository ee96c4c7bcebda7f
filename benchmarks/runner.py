"""The parent's side of the contender processes: one process per (contender,
repeat), repeats interleaved in a rotating order, and how busy the rest of the
machine was while each ran."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .contenders import REGISTRY
from .machine import cpu_seconds
from .plan import Plan

ENTRY = Path(__file__).resolve().parent / "speed.py"  # run as a script: no package on the path needed


def run_contender(name: str, folder: Path, threads: int, quick: bool, side: Path | None, plan: Plan) -> dict:
    """One process of the entry script in --contender mode; its JSON line, or {"error": ...}.

    Also measures how busy the machine was meanwhile: CPU time that other
    processes (and the hypervisor's steal) took, as a share of all cores.
    """
    cmd = [sys.executable, str(ENTRY), "--contender", name, "--model", str(folder), "--threads", str(threads)]
    if quick:
        cmd.append("--quick")
    if side is not None:
        cmd += ["--side", str(side)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false")
    busy0, steal0, child0 = cpu_seconds()
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=plan.timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {plan.timeout_s} s"}
    wall = time.perf_counter() - start
    busy1, steal1, child1 = cpu_seconds()
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        print(f"    {name} failed (exit {proc.returncode}):\n{tail}", file=sys.stderr)
        return {"error": f"exit {proc.returncode}: {tail.splitlines()[-1] if tail else ''}"}
    run = json.loads(lines[-1])
    capacity = wall * (os.cpu_count() or 1)
    run["process_wall_s"] = wall
    run["process_cpu_s"] = child1 - child0
    # The parent only waits meanwhile: busy time beyond the child's own is someone else's.
    run["others_cpu_share"] = max(0.0, (busy1 - busy0) - (child1 - child0)) / capacity
    run["steal_share"] = (steal1 - steal0) / capacity
    return run


def run_all(folders: dict[str, Path], threads: int, quick: bool, side_root: Path, plan: Plan) -> dict[str, list[dict]]:
    """Every repeat of every contender in `folders`; per contender, its runs in repeat order.

    Repeat r starts the order r places further on, so a noisy neighbour spreads
    over everyone. The first repeat of gpt2onnx writes its int8-agreement files
    under side_root/<name>.
    """
    shutil.rmtree(side_root, ignore_errors=True)
    contenders = list(folders)
    runs: dict[str, list[dict]] = {c: [] for c in contenders}
    for r in range(plan.repeats):
        order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
        for name in order:
            side = side_root / name if (r == 0 and REGISTRY[name].ours) else None
            t0 = time.perf_counter()
            run = run_contender(name, folders[name], threads, quick, side, plan)
            run["repeat"] = r
            runs[name].append(run)
            shown = "error" if "error" in run else f"decode {run['decode_tok_s']:.1f} tok/s"
            print(f"  repeat {r + 1}/{plan.repeats} {name}: {shown} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return runs
