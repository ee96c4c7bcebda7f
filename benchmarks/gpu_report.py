"""The GPU benchmark's report (benchmarks/gpu.py): gpu.json (every raw figure, the
errors and the phases) and gpu.md (decode and time-to-first-token tables, ours ÷
each peer, same greedy tokens, serving, the memory-bandwidth bound, the targets).

Cells are medians over repeats (min–max); a ratio is the median of per-repeat
ratios, repeat r of ours over repeat r of the peer: they ran next to each other.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .gpu_peers import COMPILED, CONTENDERS, OPTIMUM, OURS, TORCH
from .machine import cpu_name, machine
from .report import cell, fmt
from .stats import spread

PEERS = (OPTIMUM, TORCH, COMPILED)
OPTIMUM_X, TORCH_FP16_X, BATCH_X = 2.0, 1.5, 20.0  # the targets: ours ÷ Optimum, ours ÷ transformers fp16, top batch ÷ batch 1


def nvidia_smi() -> str | None:
    """nvidia-smi's name, driver and memory of each GPU, or None without it."""
    if not shutil.which("nvidia-smi"):
        return None
    query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
    try:
        return subprocess.run(query, capture_output=True, text=True, timeout=30).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def new_report(args, plan, shapes: dict, precisions: list[str], contenders: list[str], threads: int) -> dict:
    """gpu.json before anything ran: the run's settings and the machine."""
    rehearsal = args.device == "cpu"
    return {
        "command": " ".join(["python -m benchmarks.gpu", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "device": {"requested": args.device, "name": f"cpu (rehearsal): {cpu_name()}" if rehearsal else None, "nvidia_smi": nvidia_smi()},
        "machine": machine(threads),
        "plan": dataclasses.asdict(plan),
        "repeats": args.repeats or (1 if args.quick else 3),
        "shapes": shapes,
        "precisions": precisions,
        "contenders": contenders,
        "builds": {},  # shape -> artifact -> {"folder", "seconds"} | {"error"}
        "weights": {},  # shape -> export -> onnx_weights.weight_bytes
        "runs": {},  # "shape/precision" -> the measure child's result
        "serving": {},  # "shape/precision" -> {"levels": [...]} | {"error"}
        "bandwidth": None,
        "phases": {},  # "shape/precision/phase" -> "done in N s" | "skipped: deadline" | "error: ..."
        "seconds": 0,
    }


def figures(report: dict, key: str, name: str) -> dict:
    """One contender's result in one (shape, precision) run: {"runs": {metric: [values]}, ...}."""
    return report["runs"].get(key, {}).get("contenders", {}).get(name, {})


def metric_keys(report: dict) -> list[tuple[str, str, bool]]:
    """(key, column heading, higher is better) of each measured figure."""
    plan = report["plan"]
    out = [(f"decode_b{b}", f"batch {b} tok/s", True) for b in plan["batches"]]
    return out + [(f"ttft_{p}", f"TTFT {p} ms", False) for p in plan["ttft_prompts"]]


def ratio(report: dict, key: str, metric: str, higher: bool, peer: str, peer_key: str | None = None) -> dict:
    """spread of per-repeat speed-ups of ours over `peer` (in the run `peer_key`, default `key`): above 1, ours is faster."""
    mine, theirs = figures(report, key, OURS).get("runs", {}), figures(report, peer_key or key, peer).get("runs", {})
    pairs = zip(mine.get(metric, []), theirs.get(metric, []))
    return spread([(a / b if higher else b / a) for a, b in pairs if a > 0 and b > 0])


def keys(report: dict) -> list[tuple[str, str, str]]:
    """(run key, shape, precision) of every (shape, precision) measured, in run order."""
    return [(k, *k.split("/")) for k in report["runs"]]


def targets(report: dict) -> list[tuple[str, str]]:
    """(MET | UNMET | n/a, line) for each target."""
    out = []

    def check(value: dict, goal: float, what: str) -> None:
        m = value.get("median") if value else None
        status = "n/a" if m is None else "MET" if m >= goal else "UNMET"
        out.append((status, f"{what}: {'not measured' if m is None else f'{fmt(m)}×'} (target ≥ {goal:g}×)"))

    top = max(report["plan"]["batches"])
    for shape in report["shapes"]:
        for precision in report["precisions"]:
            key = f"{shape}/{precision}"
            check(ratio(report, key, "decode_b1", True, OPTIMUM), OPTIMUM_X, f"{key}: ours ÷ Optimum, batch-1 decode")
        fp16 = f"{shape}/fp16"
        check(ratio(report, fp16, "decode_b1", True, TORCH), TORCH_FP16_X, f"{fp16}: ours ÷ transformers fp16, batch-1 decode")
        for precision in report["precisions"]:
            runs = figures(report, f"{shape}/{precision}", OURS).get("runs", {})
            scale = [a / b for a, b in zip(runs.get(f"decode_b{top}", []), runs.get("decode_b1", []))]
            check(spread(scale), BATCH_X, f"{shape}/{precision}: ours batch-{top} aggregate ÷ batch-1 decode tok/s")
    return out


def greedy(report: dict) -> list[str]:
    """Whether ours made the peers' greedy ids at batch 1, and where they first differ."""
    lines = []
    for key, _, _ in keys(report):
        mine = figures(report, key, OURS).get("tokens_b1")
        for peer in PEERS:
            theirs = figures(report, key, peer).get("tokens_b1")
            if mine is None or theirs is None:
                continue
            diff = next((i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b), None)
            state = f"equal ({len(mine)} tokens)" if diff is None and len(mine) == len(theirs) else f"first differ at token {diff}"
            lines.append(f"- {key}: ours vs {peer}: {state}")
    return lines


def tables(report: dict) -> list[str]:
    """The absolute table and the ratio table."""
    metrics = metric_keys(report)
    lines = ["## Decode and time to first token", "", "| shape | precision | contender | load s | warm-up s | " + " | ".join(h for _, h, _ in metrics) + " |",
             "|" + " --- |" * (5 + len(metrics))]  # fmt: skip
    for key, shape, precision in keys(report):
        for name in CONTENDERS:
            f = figures(report, key, name)
            if f.get("runs") or "load_s" in f:  # those left out are under Errors and skips
                cells = [cell(spread(f["runs"].get(m, []))) for m, _, _ in metrics]
                lines.append(f"| {shape} | {precision} | {name} | {fmt(f.get('load_s'))} | {fmt(f.get('warmup_s'))} | " + " | ".join(cells) + " |")
    lines += ["", "## Ours ÷ peer", "", "Speed-up of gpt2onnx over each peer: tok/s ÷ tok/s, and for TTFT the peer's time ÷ ours; above 1, ours is faster.", "",
              "| shape | precision | peer | " + " | ".join(h.replace(" tok/s", "").replace(" ms", "") for _, h, _ in metrics) + " |", "|" + " --- |" * (3 + len(metrics))]  # fmt: skip
    for key, shape, precision in keys(report):
        peers = [(p, key) for p in PEERS] + ([(f"{TORCH} fp16", f"{shape}/fp16")] if precision == "fp32" and f"{shape}/fp16" in report["runs"] else [])
        for peer, peer_key in peers:
            values = [ratio(report, key, m, higher, peer.split()[0], peer_key) for m, _, higher in metrics]
            if any(values):
                lines.append(f"| {shape} | {precision} | {peer} | " + " | ".join(cell(v) for v in values) + " |")
    return lines


def serving(report: dict) -> list[str]:
    lines = ["## Serving: `gpt2onnx serve` (ours only)", "", "benchmarks/serving.py's load generator: each client streams /v1/completions requests back to back "
             "(32 random-id prompt tokens, 64 new, greedy, forced length).", "",
             "| shape | precision | slots | clients | tok/s | TTFT p50 / p99 ms | ITL p50 / p99 ms | errors |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for key, result in report["serving"].items():
        shape, precision = key.split("/")
        if "error" in result:
            lines.append(f"| {shape} | {precision} | | | error: {result['error']} | | | |")
        for f in result.get("levels", []):
            lines.append(f"| {shape} | {precision} | {result['slots']} | {f['concurrency']} | {fmt(f['tok_s'])} | {fmt(f['ttft_p50_ms'])} / {fmt(f['ttft_p99_ms'])} | "
                         f"{fmt(f['itl_p50_ms'])} / {fmt(f['itl_p99_ms'])} | {f['errors']} |")  # fmt: skip
    return lines


def bound(report: dict) -> list[str]:
    """Weights read per token, the tok/s that the bandwidth allows at batch 1, and the share reached."""
    bw = report.get("bandwidth")
    if not bw:
        return ["## Memory-bandwidth bound", "", "- not measured"]
    lines = ["## Memory-bandwidth bound", "", f"Bandwidth {bw['gbs']:.0f} GB/s ({bw['how']}); bound = bandwidth ÷ weight bytes read per token (onnx_weights.py).", "",
             "| shape | export | MB read per token | bound tok/s | batch-1 tok/s | share of bound |", "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for shape, exports in report["weights"].items():
        for export, w in exports.items():
            name, precision = export.split("-")
            limit = bw["gbs"] * 1e9 / w["read_bytes_per_token"]
            got = spread(figures(report, f"{shape}/{precision}", name).get("runs", {}).get("decode_b1", [])).get("median")
            share = f"{100 * got / limit:.0f}%" if got else "n/a"
            lines.append(f"| {shape} | {export} | {w['read_bytes_per_token'] / 1e6:.1f} | {fmt(limit)} | {fmt(got)} | {share} |")
    return lines


def problems(report: dict) -> list[str]:
    """Every error and skip: builds, contenders, metrics, serving, phases."""
    lines = [f"- {shape} build {name}: {b['error']}" for shape, builds in report["builds"].items() for name, b in builds.items() if isinstance(b, dict) and "error" in b]
    lines += [f"- {shape}: build process: {builds['error']}" for shape, builds in report["builds"].items() if isinstance(builds.get("error"), str)]
    for key, result in report["runs"].items():
        lines += [f"- {key}: {result['error']}"] if result.get("error") else []
        lines += [f"- {key} {name}: {f['error']}" for name, f in result.get("contenders", {}).items() if f.get("error")]
        lines += [f"- {key} {metric}: {why}" for metric, why in result.get("skipped", {}).items()]
    lines += [f"- {phase}: {state}" for phase, state in report["phases"].items() if not state.startswith("done")]
    return lines or ["- none"]


def header(report: dict) -> list[str]:
    d, m, plan = report["device"], report["machine"], report["plan"]
    return [
        "# gpt2onnx GPU speed benchmark", "",
        f"`{report['command']}`, {report['date']}, {report['seconds']:.0f} s. Written by `benchmarks/gpu.py`; raw figures in `gpu.json`.", "",
        f"- device: {d.get('name') or 'unknown'}" + (f"; nvidia-smi: {d['nvidia_smi']}" if d.get("nvidia_smi") else ""),
        f"- host: {m['cpu']}, {m['cores']} cores; Python {m['python']}; " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + f"; gpt2onnx {m['gpt2onnx_commit']}",
        "- models: random weights, seed 0: " + "; ".join(f"{name} {shape}" for name, shape in report["shapes"].items()),
        f"- greedy, forced to full length; decode: prompt {plan['prompt_tokens']} random ids, {plan['new_tokens']} new tokens, tok/s = batch × (new − 1) ÷ "
        f"(last token time − first token time); TTFT: batch 1, call start → first token; {report['repeats']} repeat(s) per metric, the contenders "
        "in a rotated order each repeat, all loaded in one process per (shape, precision) after a warm-up call at every measured shape",
    ]  # fmt: skip


def markdown(report: dict) -> str:
    lines = header(report) + [""] + tables(report) + ["", "## Same greedy tokens (batch 1)", ""] + (greedy(report) or ["- not measured"])
    lines += [""] + serving(report) + [""] + bound(report)
    lines += ["", "## Targets", "", "```"] + [f"{status:5s}  {line}" for status, line in targets(report)] + ["```"]
    lines += ["", "## Errors and skips", ""] + problems(report) + ["", "## Phases", ""] + [f"- {p}: {s}" for p, s in report["phases"].items()] + [""]
    return "\n".join(lines)


def replace_text(path: Path, text: str) -> None:
    """Write `path` whole: a reader (the parent polling a child's result, a person) never sees half of it."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write(out: Path, report: dict) -> None:
    """gpu.json and gpu.md into `out`."""
    replace_text(out / "gpu.json", json.dumps(report, indent=1))
    replace_text(out / "gpu.md", markdown(report))


def summary(report: dict) -> str:
    """The console's end: the decode table and the targets."""
    return "\n".join(["", *tables(report), "", *(f"{status:5s}  {line}" for status, line in targets(report))])
