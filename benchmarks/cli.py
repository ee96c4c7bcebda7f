"""The command line: `python benchmarks/speed.py [flags]` (or `python -m
benchmarks`) runs the whole benchmark in this, the parent process; with the
internal --contender flag it is one contender's process instead, which prints
its figures as one JSON line."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .contenders import NAMES, NATIVE, REGISTRY
from .plan import Plan, all_metrics, child_plan, plan_for

REPO = Path(__file__).resolve().parent.parent


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmarks/speed.py", description="Speed benchmark: gpt2onnx against llama.cpp, Optimum and transformers, in one run, on this machine.")
    parser.add_argument("--repeats", type=int, default=None, help="process runs per contender (default 3; 1 with --quick)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="threads for every contender (default: all cores)")
    parser.add_argument("--out", default=None, help="where speed.md/.json/.png go (default docs/speed; a new temporary folder with --quick)")
    parser.add_argument("--work", default=None, help="keep the checkpoint and exports here and reuse them next time (default: a temporary folder, removed)")
    parser.add_argument("--quick", action="store_true", help="tiny model, 1 repeat, few tokens: a smoke test")
    parser.add_argument("--contenders", default=None, help=f"comma-separated subset of {','.join(NAMES)}")
    parser.add_argument("--contender", default=None, help=argparse.SUPPRESS)  # internal: measure one contender, print JSON
    parser.add_argument("--model", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--side", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.contender:
        from .workload import measure

        figures = measure(args.contender, args.model, args.threads, child_plan(args.quick), Path(args.side) if args.side else None)
        print(json.dumps(figures))
        return 0
    if not args.quick and importlib.util.find_spec("matplotlib") is None:
        print("speed.py: the plot needs matplotlib: pip install '.[bench]' (or run with --quick)", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else (Path(tempfile.mkdtemp(prefix="gpt2onnx-speed-quick-")) if args.quick else REPO / "docs" / "speed")
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="gpt2onnx-speed-"))
    work.mkdir(parents=True, exist_ok=True)
    # --quick (CI's smoke test) leaves out llama.cpp: building it takes 10 minutes.
    wanted = [c for c in NAMES if c in args.contenders.split(",")] if args.contenders else [c for c in NAMES if not (args.quick and c in NATIVE)]
    try:
        return parent(args, plan_for(args.quick, args.repeats), out, work, wanted)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


def parent(args: argparse.Namespace, plan: Plan, out: Path, work: Path, wanted: list[str]) -> int:
    """Models, bandwidth probe, every contender process, then the report; 1 if any process failed."""
    from . import report as reporting
    from .machine import machine, probe_with_contention
    from .models import build_models
    from .runner import run_all
    from .stats import agreement, contention, same_work, summarise, targets

    started = time.perf_counter()
    print(f"models in {work}:", flush=True)
    folders, build_s, unavailable = build_models(work, plan, wanted)
    weights = {name: w for name in folders if name in wanted and (w := REGISTRY[name].weights(folders[name])) is not None}
    print("memory-bandwidth probe ...", flush=True)
    probe = probe_with_contention(plan, args.threads)
    print(f"  {probe['read_gbs']:.1f} GB/s read with {args.threads} threads", flush=True)
    side_root = work / "side"
    runs = run_all(folders, args.threads, args.quick, side_root, plan)
    summary, ratios = summarise(runs, plan, probe, weights)
    checks = targets(summary, ratios, plan, weights)
    report = {
        "command": " ".join(["benchmarks/speed.py"] + sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(args.threads),
        "plan": dataclasses.asdict(plan),
        "repeats": plan.repeats,
        "contenders": [name for name in wanted if name in folders],
        "unavailable": unavailable,
        "build_seconds": build_s,
        "bandwidth": probe,
        "weights": weights,
        "metrics": [dataclasses.asdict(m) for m in all_metrics(plan)],
        "runs": runs,
        "summary": summary,
        "ratios": ratios,
        "targets": [dict(dataclasses.asdict(t), status=t.status) for t in checks],
        "int8_agreement": agreement(side_root),
        "same_tokens_as_transformers": same_work(runs),
        "contention": contention(runs),
        "seconds": None,
    }
    report["seconds"] = round(time.perf_counter() - started, 1)
    written = reporting.write(out, report, plan, checks)
    reporting.print_summary(report, plan, checks)
    print(f"\nwrote {', '.join(map(str, written))} in {report['seconds']:.0f} s")
    return 1 if any("error" in run for repeats in runs.values() for run in repeats) else 0
