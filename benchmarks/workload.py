"""Inside one contender's process: the whole workload (imports, load, warm-up,
decode, latency against context, batch, beams, memory) and the raw figures it
yields, printed by the entry point as one JSON line for the parent."""

from __future__ import annotations

import os
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from .contenders import REGISTRY
from .plan import Plan


def rss_mb() -> float:
    """Resident set size now, from /proc/self/statm."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """Peak resident set size of this process: VmHWM from /proc/self/status.

    Not getrusage's ru_maxrss: Linux carries it across exec from the forking
    parent, so a child of the (large) parent reports at least the parent's RSS.
    VmHWM belongs to the memory map that exec made fresh.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB -> MB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prompt_rows(count: int, length: int, seed: int) -> list[list[int]]:
    """`count` prompts of `length` random GPT-2 token ids (never eos): the same in every process."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 50256, (count, length)).tolist()  # [count, length]


def measure(name: str, folder: str, threads: int, plan: Plan, side: Path | None) -> dict:
    """The whole workload of one contender in this process; returns its figures."""
    runner = REGISTRY[name](folder, threads)
    figures: dict = {"contender": name, "pid": os.getpid(), "loadavg_start": os.getloadavg()[0]}
    own = runner.own_workload(plan)
    if own is not None:
        return {**figures, **own, "loadavg_end": os.getloadavg()[0]}
    start = time.perf_counter()
    runner.imports()
    figures["import_s"] = time.perf_counter() - start
    figures["rss_before_load_mb"] = rss_mb()
    start = time.perf_counter()
    runner.load()
    figures["load_s"] = time.perf_counter() - start
    figures["rss_after_load_mb"] = rss_mb()
    figures["load_rss_mb"] = figures["rss_after_load_mb"] - figures["rss_before_load_mb"]

    p = plan.prompt_tokens
    warm = runner.generate(prompt_rows(1, p, 1), plan.warmup_tokens)
    figures["warmup_s"] = warm.end - warm.start
    decode(runner, plan, figures)
    latency(runner, plan, figures)

    # Batch: every row's tokens count; a step's time is when its last row's token arrived.
    trace = runner.generate(prompt_rows(plan.batch, p, 3), plan.new_tokens)
    assert all(len(t) == plan.new_tokens for t in trace.tokens)
    figures["batch_tok_s"] = plan.batch * (len(trace.stamps) - 1) / trace.decode_s
    figures["batch_e2e_tok_s"] = plan.batch * plan.new_tokens / (trace.end - trace.start)
    figures["batch_speedup"] = figures["batch_tok_s"] / figures["decode_tok_s"]

    # Beam search: only the whole call is timed (beams hand their tokens over at the end).
    trace = runner.generate(prompt_rows(1, p, 4), plan.beam_new_tokens, beams=plan.beams)
    figures["beam_tok_s"] = len(trace.tokens[0]) / (trace.end - trace.start)
    figures["beam_tokens"] = trace.tokens[0]

    figures["peak_rss_mb"] = peak_rss_mb()  # before the extras below, which are not part of the workload
    figures["ru_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # raw; inflated by the parent (see peak_rss_mb)
    runner.extra(plan, figures, side)
    figures["torch_imported"] = "torch" in sys.modules
    figures["loadavg_end"] = os.getloadavg()[0]
    return figures


def decode(runner, plan: Plan, figures: dict) -> None:
    """Batch 1, prompt_tokens in, new_tokens out: decode and end-to-end tok/s, TTFT, Python overhead."""
    p = plan.prompt_tokens
    trace = runner.generate(prompt_rows(1, p, 2), plan.new_tokens)
    assert len(trace.tokens[0]) == plan.new_tokens, f"{runner.name} made {len(trace.tokens[0])} tokens, not {plan.new_tokens}"
    steps = len(trace.stamps) - 1  # steps after the first token: each one runs the model once
    figures["decode_tok_s"] = steps / trace.decode_s
    figures["e2e_tok_s"] = plan.new_tokens / (trace.end - trace.start)
    figures[f"ttft_{p}_ms"] = 1e3 * trace.ttft_s
    figures["decode_steps_ms"] = trace.steps_ms()
    figures["decode_tokens"] = trace.tokens[0]
    if trace.inside:  # gpt2onnx: what the same stretch spent inside onnxruntime's run
        inside_s = trace.inside[-1] - trace.inside[0]
        figures["python_overhead_ms"] = 1e3 * (trace.decode_s - inside_s) / steps
        figures["onnxruntime_decode_s"] = inside_s


def latency(runner, plan: Plan, figures: dict) -> None:
    """Per-token latency against context (prompt of c tokens, then latency_steps steps); TTFT of the long prompt."""
    for c in plan.contexts:
        trace = runner.generate(prompt_rows(1, c, 100 + c), 1 + plan.latency_steps)
        figures[f"latency_ctx{c}_ms"] = statistics.median(trace.steps_ms())
        figures[f"latency_ctx{c}_steps_ms"] = trace.steps_ms()
        figures[f"ttft_ctx{c}_ms"] = 1e3 * trace.ttft_s
    figures[f"ttft_{plan.long_prompt}_ms"] = figures[f"ttft_ctx{plan.long_prompt}_ms"]
