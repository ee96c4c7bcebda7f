"""What the speed benchmark measures: the plan (sizes, repeats, timeouts), the
metrics every contender reports in table order, the comparisons (ratio pairs)
and the names of the four contenders the issue's targets refer to.

Nothing here imports more than the standard library: the contender processes
import it before they time their own imports.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

# The contenders' names (keys of speed.json, values of --contenders). The classes
# live in benchmarks/contenders/; these names are here because the ratio pairs
# and the targets below compare those four in particular.
FP32, INT8, INT4, OPTIMUM, TRANSFORMERS = "gpt2onnx-fp32", "gpt2onnx-int8", "gpt2onnx-int4", "optimum", "transformers"
INT8_KV8, INT4_KV8 = "gpt2onnx-int8-kv8", "gpt2onnx-int4-kv8"  # the same weights with --kv-cache-dtype int8
LLAMA_F32, LLAMA_F16, LLAMA_Q8, LLAMA_Q4 = "llama.cpp-f32", "llama.cpp-f16", "llama.cpp-q8_0", "llama.cpp-q4_0"
# gpt2onnx and the llama.cpp format of the same precision.
SAME_PRECISION = ((FP32, LLAMA_F32), (INT8, LLAMA_Q8), (INT4, LLAMA_Q4))
# (ours, peer) pairs of the ratio table.
PAIRS = ((FP32, TRANSFORMERS), (FP32, OPTIMUM), (INT8, TRANSFORMERS), (INT8, OPTIMUM), (INT8, FP32), (INT4, TRANSFORMERS), (INT4, INT8), *SAME_PRECISION,
         (INT8_KV8, INT8), (INT4_KV8, INT4), (INT8_KV8, LLAMA_Q8), (INT4_KV8, LLAMA_Q4))

# A contender process during which other processes took more than this share of
# the CPU ran on a busy machine: the report says its figures are not reliable.
BUSY = 0.05

TINY = {"n_layer": 2, "n_head": 4, "n_embd": 64, "n_positions": 1024}
# Prompts whose greedy continuations and first-step log-probabilities int8 and fp32 are compared on.
AGREEMENT_PROMPTS = (
    "Once upon a time",
    "The quick brown fox jumps over the lazy dog.",
    "In 1969, the first people to walk on the Moon",
    "def fibonacci(n):",
)


@dataclass(frozen=True)
class Plan:
    """What one benchmark run measures; FULL is the issue's settings, QUICK a smoke test's."""

    shape: dict  # make_random_gpt2 shape
    repeats: int = 3
    prompt_tokens: int = 32  # decode, batch and beam prompts
    new_tokens: int = 128  # decode and batch runs
    long_prompt: int = 512  # the second TTFT prompt (one of `contexts`)
    contexts: tuple[int, ...] = (64, 256, 512, 768, 896, 1000)  # per-token latency; the plot's x axis (896: llama-bench's long depth)
    latency_steps: int = 8  # timed steps per context
    batch: int = 8
    beams: int = 4
    beam_new_tokens: int = 64
    warmup_tokens: int = 8
    agreement_tokens: int = 32  # int8 vs fp32 greedy continuations
    probe_bytes: int = 2**30  # memory-bandwidth probe array
    probe_repeats: int = 7
    timeout_s: int = 900  # per contender process


FULL = Plan(shape=None)  # shape filled in by plan_for (GPT2_SMALL lives in the export package)
QUICK = Plan(
    shape=TINY,
    repeats=1,
    new_tokens=16,
    contexts=(64, 512, 1000),
    latency_steps=4,
    beam_new_tokens=8,
    warmup_tokens=2,
    agreement_tokens=8,
    probe_bytes=64 * 2**20,
    probe_repeats=3,
    timeout_s=300,
)


def plan_for(quick: bool, repeats: int | None = None) -> Plan:
    """The parent's plan: QUICK, or FULL in GPT-2 small's shape; `repeats` overrides the default."""
    if quick:
        plan = QUICK
    else:
        from gpt2onnx.export.random_model import GPT2_SMALL  # argparse-light: no torch import

        plan = dataclasses.replace(FULL, shape=dict(GPT2_SMALL))
    return dataclasses.replace(plan, repeats=repeats or plan.repeats)


def child_plan(quick: bool) -> Plan:
    """A contender process's plan: the shape matters to the parent only (it builds the models)."""
    return QUICK if quick else dataclasses.replace(FULL, shape={})


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool
    ours_only: bool = False  # gpt2onnx's figures only (absolute table, no ratios)


def metrics(plan: Plan) -> list[Metric]:
    """Every figure each contender reports, in table order."""
    p, n = plan.prompt_tokens, plan.new_tokens
    out = [
        Metric("decode_tok_s", f"decode, prompt {p}, {n} new, batch 1", "tok/s", True),
        Metric("e2e_tok_s", f"end-to-end, prompt {p}, {n} new, batch 1", "tok/s", True),
        Metric(f"ttft_{p}_ms", f"time to first token, prompt {p}", "ms", False),
        Metric(f"ttft_{plan.long_prompt}_ms", f"time to first token, prompt {plan.long_prompt}", "ms", False),
    ]
    out += [Metric(f"latency_ctx{c}_ms", f"per-token latency at context {c}", "ms", False) for c in plan.contexts]
    out += [
        Metric("batch_tok_s", f"batch {plan.batch} aggregate decode, prompt {p}, {n} new", "tok/s", True),
        Metric("batch_e2e_tok_s", f"batch {plan.batch} aggregate end-to-end", "tok/s", True),
        Metric("batch_speedup", f"batch {plan.batch} / batch 1 decode tok/s", "x", True),
        Metric("beam_tok_s", f"beam search, {plan.beams} beams, prompt {p}, {plan.beam_new_tokens} new", "tok/s", True),
        Metric("load_s", "load (session / model; imports apart)", "s", False),
        Metric("import_s", "imports of the runtime's packages", "s", False),
        Metric("rss_after_load_mb", "RSS after load", "MB", False),
        Metric("load_rss_mb", "RSS added by load", "MB", False),
        Metric("peak_rss_mb", "peak RSS (whole workload)", "MB", False),
    ]
    return out


# Figures only gpt2onnx has (absolute table only).
OURS_ONLY = (
    Metric("python_overhead_ms", "Python overhead per token (decode wall - onnxruntime run)", "ms", False, True),
    Metric("load_noverify_s", "load with verify=False (no sha256 of the files)", "s", False, True),
    Metric("bandwidth_fraction_ctx64", "decode at context 64 / memory-bandwidth bound", "x", True, True),
)


def all_metrics(plan: Plan) -> list[Metric]:
    """The rows of the absolute table: every contender's metrics, then gpt2onnx's own."""
    return metrics(plan) + list(OURS_ONLY)
