"""GPU speed benchmark: gpt2onnx against Optimum, transformers and transformers +
torch.compile on one CUDA device, at GPT-2 small and XL shapes, float32 and float16.

    python -m benchmarks.gpu --work DIR --out DIR [--device cuda|cpu] [--quick] [--shapes small,xl]
                             [--precisions fp32,fp16] [--repeats 3] [--deadline-s S] [--contenders ...]

`--device cpu` is the rehearsal: the same code on onnxruntime's CPU provider and torch's
CPU (no torch.compile, no Optimum float16 export: both need CUDA). `--quick` runs a tiny
model with few tokens (tests/test_gpu_bench.py).

Per shape, in --work/<shape>: a random checkpoint and the exports (gpu_peers.build_all,
reused while unchanged), made in a child process. Per (shape, precision): one child
process loads every contender on the device and measures them interleaved (each
metric's repeat r starts the order r places on). Last, per (shape, precision),
`gpt2onnx serve` on the device under benchmarks/serving.py's load generator. gpu.json
and gpu.md (gpu_report.py) are rewritten into --out whenever a child has measured more,
so a run cut short keeps what it measured; past --deadline-s every phase (and metric)
not begun is recorded as "skipped: deadline".
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from . import gpu_peers as peers
from . import gpu_report
from .gpu_peers import COMPILED, CONTENDERS, OPTIMUM, OURS

REPO = Path(__file__).resolve().parent.parent
XL = {"n_layer": 48, "n_head": 25, "n_embd": 1600, "n_positions": 1024}  # GPT-2 XL (1.5B)


@dataclass(frozen=True)
class GpuPlan:
    """What one run measures: FULL is the issue's, QUICK the smoke test's, LIGHT QUICK's sizes on real shapes."""

    batches: tuple[int, ...] = (1, 8, 64)  # decode tok/s at each batch
    prompt_tokens: int = 32  # decode prompts
    new_tokens: int = 128  # decode runs
    ttft_prompts: tuple[int, ...] = (32, 1000)  # time to first token, batch 1
    warmup_tokens: int = 16  # new tokens of each warm-up call (torch.compile's: the measured number)
    serve_levels: tuple[int, ...] = (16, 64)  # concurrent streaming clients
    serve_slots: int = 64
    probe_bytes: int = 2 * 2**30
    probe_repeats: int = 10
    compile_cap_s: int = 240  # torch.compile's whole warm-up (--compile-cap-s)
    build_timeout_s: int = 3600  # one shape's checkpoint and exports
    measure_timeout_s: int = 1800  # one (shape, precision) child


FULL = GpuPlan()
QUICK = GpuPlan(batches=(1, 2, 4), new_tokens=8, ttft_prompts=(8, 64), warmup_tokens=4, serve_levels=(2, 4), probe_bytes=64 * 2**20, probe_repeats=3)
LIGHT = dataclasses.replace(QUICK, serve_slots=8)  # 124M on 2 CPU cores: does it export and load?


def workload(plan: GpuPlan) -> list[tuple[str, int, int, int]]:
    """Every timed call, in measurement order: (metric key, batch, prompt tokens, new tokens)."""
    items = [(f"decode_b{b}", b, plan.prompt_tokens, plan.new_tokens) for b in plan.batches]
    return items + [(f"ttft_{p}", 1, p, 1) for p in plan.ttft_prompts]


# --- the child that measures one (shape, precision) -----------------------------------------


def measure_child(job: dict) -> int:
    """Load every contender of the job on its device, warm each up, then each metric's repeats
    in rotated orders; the result file is rewritten after every step."""
    from .workload import prompt_rows

    device, plan = job["device"], GpuPlan(**{k: tuple(v) if isinstance(v, list) else v for k, v in job["plan"].items()})
    result: dict = {"device": device, "contenders": {}, "skipped": {}}
    save = lambda: gpu_report.replace_text(Path(job["result"]), json.dumps(result, indent=1))  # noqa: E731
    if device == "cuda":
        import torch  # before onnxruntime: its CUDA provider then finds torch's CUDA libraries loaded

        result["device_name"] = torch.cuda.get_device_name(0)
        result["cuda"] = {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}
    result["bandwidth"] = peers.bandwidth(device, plan.probe_bytes, plan.probe_repeats, job["threads"])
    print(f"    bandwidth {result['bandwidth']['gbs']:.0f} GB/s ({result['bandwidth']['how']})", flush=True)
    save()
    items = workload(plan)
    runners = {}
    for name, folder in job["folders"].items():
        figures, cap = result["contenders"].setdefault(name, {"runs": {}}), {}
        try:
            runner = peers.contender(name, folder, job["threads"], device, job["precision"] == "fp16")
            start = time.perf_counter()
            runner.imports()
            runner.load()
            figures["load_s"] = time.perf_counter() - start
            # One short call per measured shape. torch.compile compiles per shape and per
            # static-cache state: generate() reuses the last call's cache when it is large enough,
            # so the shapes a call sees depend on the call before it. It runs the measurement's
            # sequence twice over (each shape twice in a row, as the repeats do; the second
            # pass also covers the last shape -> the first), in full length, under a cap.
            compiled = name == COMPILED
            start = time.perf_counter()
            with peers.time_cap(plan.compile_cap_s) if compiled else nullcontext({}) as cap:
                for _, batch, prompt, new in items * 2 if compiled else items:
                    for _ in range(2 if compiled else 1):
                        runner.generate(prompt_rows(batch, prompt, 0), new if compiled else min(new, plan.warmup_tokens))
            figures["warmup_s"] = time.perf_counter() - start
            runners[name] = runner
            print(f"    {name}: loaded in {figures['load_s']:.1f} s, warmed up in {figures['warmup_s']:.1f} s", flush=True)
        except Exception as e:  # noqa: BLE001 - this contender is out; the others carry on
            why = f"TimeoutError: over the {plan.compile_cap_s} s cap (--compile-cap-s)" if cap.get("fired") else peers.one_line(e)
            figures["error"] = f"load/warm-up, {time.perf_counter() - start:.0f} s in: {why}"
            print(f"    {name}: {figures['error']}", flush=True)
        save()
    for seed, (key, batch, prompt, new) in enumerate(items, start=1):
        if job["deadline_at"] is not None and time.time() > job["deadline_at"]:
            result["skipped"][key] = "skipped: deadline"
            continue
        rows = prompt_rows(batch, prompt, seed)  # [batch][prompt] random ids: the same for everyone
        for r in range(job["repeats"]):
            names = list(runners)
            for name in names[r % len(names) :] + names[: r % len(names)] if names else []:
                figures = result["contenders"][name]
                try:
                    trace = runners[name].generate(rows, new)
                    assert all(len(t) == new for t in trace.tokens), f"made {[len(t) for t in trace.tokens]} tokens, not {new}"
                    value = 1e3 * trace.ttft_s if key.startswith("ttft") else batch * (len(trace.stamps) - 1) / trace.decode_s
                    figures["runs"].setdefault(key, []).append(value)
                    if key == "decode_b1" and r == 0:
                        figures["tokens_b1"] = trace.tokens[0]  # greedy ids: compared across contenders
                except Exception as e:  # noqa: BLE001
                    figures["error"] = f"{key}: {peers.one_line(e)}"
                    print(f"    {name}: {figures['error']}", flush=True)
                    del runners[name]
        shown = ", ".join(f"{n} {v[-1]:.1f}" for n, f in result["contenders"].items() if (v := f["runs"].get(key)))
        print(f"    {key} ({'ms' if key.startswith('ttft') else 'tok/s'}, last repeat): {shown}", flush=True)
        save()
    return 0


# --- the parent ---------------------------------------------------------------------------


def run_child(mode: str, job: dict, path: Path, timeout: int, progress=None) -> dict:
    """`python -m benchmarks.gpu --MODE JOB` (its output goes to this log); the result file it
    left, with "error" added when it did not exit 0. progress(result) runs whenever the child
    rewrites its result file, so a run killed from outside still has it in gpu.json."""
    result_path = path.with_suffix(".result.json")
    result_path.unlink(missing_ok=True)
    path.write_text(json.dumps({**job, "result": str(result_path)}))
    read = lambda: json.loads(result_path.read_text()) if result_path.is_file() else {}  # noqa: E731 - the child replaces it whole
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.gpu", f"--{mode}", str(path)], cwd=REPO, env=env)
    end, seen, error = time.monotonic() + timeout, None, None
    while proc.poll() is None:
        if time.monotonic() > end:
            proc.kill()
            error = f"the {mode} process timed out after {timeout} s"
            break
        stamp = result_path.stat().st_mtime_ns if result_path.is_file() else None
        if progress and stamp != seen:
            seen = stamp
            progress(read())
        time.sleep(1)
    proc.wait()
    error = error or (None if proc.returncode == 0 else f"the {mode} process exited {proc.returncode}")
    return {**read(), "error": error} if error else read()


def folders_for(builds: dict, precision: str, wanted: list[str], device: str, quick: bool, compile_on_cpu: bool) -> tuple[dict, dict]:
    """({contender: the folder it loads}, {contender: why it is left out}) for one precision."""
    folders, out = {}, {}
    for name in wanted:
        artifact = {OURS: f"ours-{precision}", OPTIMUM: f"optimum-{precision}"}.get(name, "checkpoint")
        if name == COMPILED and (quick or device == "cpu") and not compile_on_cpu:
            out[name] = "skipped: torch.compile runs on CUDA only, and not with --quick"
        elif "error" in builds.get(artifact, {"error": "not built"}):
            out[name] = f"{artifact}: {builds.get(artifact, {}).get('error', 'not built')}"
        else:
            folders[name] = builds[artifact]["folder"]
    return folders, out


def measure(args, plan: GpuPlan, report: dict, key: str, folders: dict, left_out: dict, deadline_at: float | None, path: Path, write) -> dict:
    """The (shape, precision) child's result, with the contenders left out and why; write() rewrites
    the report whenever the child has measured more."""
    print(f"{key}: measuring {', '.join(folders) or 'nothing'} on {args.device}", flush=True)
    job = {"device": args.device, "precision": key.split("/")[1], "threads": len(os.sched_getaffinity(0)), "repeats": report["repeats"],
           "plan": dataclasses.asdict(plan), "folders": folders, "deadline_at": deadline_at}  # fmt: skip

    def store(result: dict) -> dict:
        result.setdefault("contenders", {}).update({name: {"error": why, "runs": {}} for name, why in left_out.items()})
        report["runs"][key] = result
        report["bandwidth"] = report.get("bandwidth") or result.get("bandwidth")  # the first child's probe
        report["device"]["name"] = report["device"].get("name") or result.get("device_name")
        write()
        return result

    # A child stops starting metrics at the deadline; one hung past it by minutes is killed.
    timeout = plan.measure_timeout_s if deadline_at is None else min(plan.measure_timeout_s, max(0, deadline_at - time.time()) + 180)
    return store(run_child("measure", job, path, int(timeout), store) if folders else {"error": "nothing to measure"})


def parent(args: argparse.Namespace) -> int:
    from gpt2onnx.export.random_model import GPT2_SMALL

    from .plan import TINY

    started = time.monotonic()
    plan = QUICK if args.quick else LIGHT if args.light else FULL
    plan = dataclasses.replace(plan, compile_cap_s=args.compile_cap_s or plan.compile_cap_s)
    shapes = {"tiny": TINY} if args.quick else {s: {"small": GPT2_SMALL, "xl": XL}[s] for s in args.shapes.split(",")}
    precisions, wanted = args.precisions.split(","), [c for c in CONTENDERS if c in args.contenders.split(",")]
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    report = gpu_report.new_report(args, plan, shapes, precisions, wanted, len(os.sched_getaffinity(0)))
    deadline_at = None if args.deadline_s is None else time.time() + args.deadline_s  # the children's clock

    def phase(name: str, step, into: dict, key: str) -> dict:
        """Run step() unless past --deadline-s; into[key] = its result; the phase's outcome recorded, the report rewritten."""
        if args.deadline_s is not None and time.monotonic() - started > args.deadline_s:
            into[key], report["phases"][name] = {"error": "skipped: deadline"}, "skipped: deadline"
            print(f"{name}: skipped: deadline", flush=True)
            return {}
        t0 = time.monotonic()
        try:
            into[key] = step()
        except Exception as e:  # noqa: BLE001 - recorded; the next phase goes on
            into[key] = {"error": peers.one_line(e)}
        error = into[key].get("error")
        report["phases"][name] = f"error: {error}" if error else f"done in {time.monotonic() - t0:.0f} s"
        report["seconds"] = round(time.monotonic() - started, 1)
        gpu_report.write(out, report)
        return into[key]

    folders, left_out = {}, {}  # per "shape/precision": {contender: folder}, {contender: why not}
    for shape_name, shape in shapes.items():
        print(f"{shape_name} {shape}: checkpoint and exports in {work / shape_name}", flush=True)
        job = {"root": str(work / shape_name), "shape": shape, "precisions": precisions, "device": args.device, "contenders": wanted}
        builds = phase(f"{shape_name}/build", lambda: run_child("build", job, work / f"{shape_name}-build.json", plan.build_timeout_s), report["builds"], shape_name)
        report["weights"][shape_name] = {name: b["weights"] for name, b in builds.items() if isinstance(b, dict) and "weights" in b}
        for precision in precisions if not args.prepare_only else ():
            key = f"{shape_name}/{precision}"
            folders[key], left_out[key] = folders_for(builds, precision, wanted, args.device, args.quick, args.compile_on_cpu)
            path = work / f"{shape_name}-{precision}-measure.json"
            step = lambda: measure(args, plan, report, key, folders[key], left_out[key], deadline_at, path, lambda: gpu_report.write(out, report))  # noqa: E731
            phase(f"{key}/measure", step, report["runs"], key)
    # The server last: the targets are the measurements' (a deadline cuts serving first).
    for key in folders if OURS in wanted else ():
        log = work / f"{key.replace('/', '-')}-serve.log"
        step = lambda: peers.serve(folders[key][OURS], args.device, plan.serve_slots, plan.serve_levels, log) if OURS in folders[key] else {"error": f"nothing to serve: {left_out[key][OURS]}"}  # noqa: E731
        phase(f"{key}/serve", step, report["serving"], key)
    report["seconds"] = round(time.monotonic() - started, 1)
    gpu_report.write(out, report)
    if not args.prepare_only:
        print(gpu_report.summary(report), flush=True)
    print(f"wrote {out / 'gpu.md'} and {out / 'gpu.json'} in {report['seconds']:.0f} s", flush=True)
    return 0


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--work", help="checkpoints and exports, reused next time")
    parser.add_argument("--out", help="where gpu.json and gpu.md go")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: the rehearsal of the same code")
    parser.add_argument("--quick", action="store_true", help="a tiny model, few tokens, 1 repeat: a smoke test")
    parser.add_argument("--shapes", default="small,xl", help="small (124M) and/or xl (1.5B); --quick: tiny")
    parser.add_argument("--precisions", default="fp32,fp16")
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help=f"a subset of {','.join(CONTENDERS)}")
    parser.add_argument("--repeats", type=int, default=None, help="repeats of each metric (default 3; 1 with --quick)")
    parser.add_argument("--deadline-s", type=float, default=None, help="start no phase (nor metric) after this many seconds")
    parser.add_argument("--compile-cap-s", type=int, default=None, help=f"cap on torch.compile's warm-up per (shape, precision) (default {FULL.compile_cap_s})")
    parser.add_argument("--prepare-only", action="store_true", help="build the checkpoints and exports into --work, measure nothing")
    parser.add_argument("--light", action="store_true", help=argparse.SUPPRESS)  # --quick's sizes on the real shapes
    parser.add_argument("--compile-on-cpu", action="store_true", help=argparse.SUPPRESS)  # rehearse torch.compile on the CPU
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # child: a job file
    parser.add_argument("--build", help=argparse.SUPPRESS)  # child: a job file
    args = parser.parse_args(argv)
    if not (args.measure or args.build) and not (args.work and (args.out or args.prepare_only)):
        parser.error("--work and --out are required (--prepare-only: --work)")
    if args.work and not args.out:  # --prepare-only
        args.out = str(Path(args.work) / "prepared")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.measure:
        return measure_child(json.loads(Path(args.measure).read_text()))
    if args.build:
        job = json.loads(Path(args.build).read_text())
        save = lambda builds: gpu_report.replace_text(Path(job["result"]), json.dumps(builds, indent=1))  # noqa: E731 - after every step
        peers.build_all(Path(job["root"]), job["shape"], job["precisions"], job["device"], job["contenders"], save)
        return 0
    return parent(args)


if __name__ == "__main__":
    sys.exit(main())
