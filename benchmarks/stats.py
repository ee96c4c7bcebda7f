"""From raw runs to figures: per-contender medians and ranges, per-repeat
ratios of ours to each peer, the issue's targets (PASS/FAIL), int8 against
fp32, and whether everyone made the same tokens."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .contenders import OURS
from .plan import AGREEMENT_PROMPTS, FP32, INT4, INT4_KV8, INT8, INT8_KV8, LLAMA_Q8, OPTIMUM, OURS_ONLY, PAIRS, SAME_PRECISION, TRANSFORMERS, Plan, metrics


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)} if values else {}


def derive(runs: dict[str, list[dict]], plan: Plan, probe: dict, weights: dict) -> None:
    """Figures computed from others, added to each good run: decode tok/s against context (the
    plot), the memory-bandwidth bound and the fraction of it reached at context 64, and the
    latency ratio of the last context to the first."""
    for name, repeats in runs.items():
        for run in repeats:
            if "error" in run:
                continue
            for c in plan.contexts:
                run[f"decode_tok_s_ctx{c}"] = 1e3 / run[f"latency_ctx{c}_ms"]
            if name in weights:
                bound = probe["read_gbs"] * 1e9 / weights[name]["read_bytes_per_token"]
                run["bandwidth_bound_tok_s"] = bound
                run["bandwidth_fraction_ctx64"] = run["decode_tok_s_ctx64"] / bound if "decode_tok_s_ctx64" in run else None
            run["latency_ratio_last_first"] = run[f"latency_ctx{plan.contexts[-1]}_ms"] / run[f"latency_ctx{plan.contexts[0]}_ms"]


def summarise(runs: dict[str, list[dict]], plan: Plan, probe: dict, weights: dict) -> tuple[dict, dict]:
    """(per contender: metric -> spread; per pair: metric -> spread of the per-repeat ratios)."""
    derive(runs, plan, probe, weights)
    keys = [m.key for m in metrics(plan)] + [m.key for m in OURS_ONLY]
    keys += [f"decode_tok_s_ctx{c}" for c in plan.contexts] + ["bandwidth_bound_tok_s", "latency_ratio_last_first"]
    summary = {}
    for name, repeats in runs.items():
        good = [r for r in repeats if "error" not in r]
        summary[name] = {k: spread([r[k] for r in good if r.get(k) is not None]) for k in keys}
        summary[name] = {k: v for k, v in summary[name].items() if v}
    ratios = {}
    for ours, peer in PAIRS:
        if ours not in runs or peer not in runs:
            continue
        pair = {}
        for m in metrics(plan):
            # Repeat i of ours over repeat i of the peer: they ran next to each other.
            values = [a[m.key] / b[m.key] for a, b in zip(runs[ours], runs[peer]) if "error" not in a and "error" not in b and b.get(m.key)]
            if values:
                pair[m.key] = spread(values)
        ratios[f"{ours}/{peer}"] = pair
    return summary, ratios


@dataclass(frozen=True)
class Target:
    text: str
    value: float | None  # the measured median (None: not measured)
    bound: float
    at_least: bool  # value >= bound passes (else value <= bound)
    unit: str = "x"

    @property
    def status(self) -> str:
        if self.value is None:
            return "SKIP"
        return "PASS" if (self.value >= self.bound if self.at_least else self.value <= self.bound) else "FAIL"

    def line(self) -> str:
        shown = "not measured" if self.value is None else f"{self.value:.3g}{self.unit}"
        return f"{self.status}  {self.text}: {shown} (target {'>=' if self.at_least else '<='} {self.bound:g}{self.unit})"


def targets(summary: dict, ratios: dict, plan: Plan, weights: dict | None = None) -> list[Target]:
    """The issue's targets, in report order; a figure not measured gives SKIP."""

    def med(name, key):
        return summary.get(name, {}).get(key, {}).get("median")

    def ratio(pair, key):
        return ratios.get(pair, {}).get(key, {}).get("median")

    last, first = plan.contexts[-1], plan.contexts[0]
    out = [
        Target("fp32 decode / transformers", ratio(f"{FP32}/{TRANSFORMERS}", "decode_tok_s"), 2.0, True),
        Target("fp32 decode / Optimum", ratio(f"{FP32}/{OPTIMUM}", "decode_tok_s"), 1.6, True),
        Target("int8 decode / transformers (fp32)", ratio(f"{INT8}/{TRANSFORMERS}", "decode_tok_s"), 5.0, True),
        Target(f"fp32 per-token latency ctx {last} / ctx {first}", med(FP32, "latency_ratio_last_first"), 1.25, False),
        Target(f"int8 per-token latency ctx {last} / ctx {first}", med(INT8, "latency_ratio_last_first"), 1.5, False),
    ]
    short = {name: name.removeprefix("gpt2onnx-") for name in OURS}  # gpt2onnx-fp32 -> fp32
    out += [Target(f"{short[n]} decode at ctx 64 / memory-bandwidth bound", med(n, "bandwidth_fraction_ctx64"), 0.8, True) for n in OURS]
    out += [Target(f"{short[n]} Python overhead per token", med(n, "python_overhead_ms"), 0.3, False, " ms") for n in OURS]
    out += [Target(f"{short[n]} batch {plan.batch} aggregate / batch 1 decode", med(n, "batch_speedup"), 4.0, True) for n in OURS]
    out += llama_targets(summary, ratio, plan, med)
    out += [Target(f"{short[n]} RSS added by load / weight bytes", _load_share(summary, weights, n), 1.2, False) for n in OURS if weights and n in weights]
    return out


def llama_targets(summary: dict, ratio, plan: Plan, med) -> list[Target]:
    """Against llama.cpp at equal precision (issue 16), where llama.cpp ran: per-token latency at
    context 64 and 896 and the 512-token prefill no slower (ours / theirs <= 1), and int8's
    latency growth with context no worse than q8_0's."""
    out = []
    for ours, theirs in SAME_PRECISION:
        if theirs not in summary:
            continue
        pair, a, b = f"{ours}/{theirs}", ours.split("-")[1], theirs.split("-")[1]
        for c in (64, 896):
            if c in plan.contexts:
                out.append(Target(f"{a} per-token latency at ctx {c} / llama.cpp {b}", ratio(pair, f"latency_ctx{c}_ms"), 1.0, False))
        out.append(Target(f"{a} prefill of {plan.long_prompt} / llama.cpp {b}", ratio(pair, f"ttft_{plan.long_prompt}_ms"), 1.0, False))
    if LLAMA_Q8 in summary and (q8 := med(LLAMA_Q8, "latency_ratio_last_first")) is not None:
        last, first = plan.contexts[-1], plan.contexts[0]
        out.append(Target(f"int8 latency ctx {last} / ctx {first} against llama.cpp q8_0's", med(INT8, "latency_ratio_last_first"), q8, False))
    return out


def _load_share(summary: dict, weights: dict, name: str) -> float | None:
    added = summary.get(name, {}).get("load_rss_mb", {}).get("median")
    return None if added is None else added * 2**20 / weights[name]["stored_bytes"]


def agreement(side: Path) -> dict | None:
    """int8 against fp32: greedy ids on the test prompts, and the first step's log-probabilities."""
    a, b = side / FP32, side / INT8
    if not (a / "greedy.json").is_file() or not (b / "greedy.json").is_file():
        return None  # one of them was not run (--contenders)
    fp32, int8 = json.loads((a / "greedy.json").read_text()), json.loads((b / "greedy.json").read_text())
    prompts = []
    for prompt, x, y in zip(AGREEMENT_PROMPTS, fp32, int8):
        diverge = next((i for i, (s, t) in enumerate(zip(x, y)) if s != t), None)
        prompts.append({"prompt": prompt, "equal": x == y, "first_divergence": diverge, "tokens": len(x)})
    lp32, lp8 = np.load(a / "logprobs.npy"), np.load(b / "logprobs.npy")  # [prompts, vocab]
    diff = lp8 - lp32  # [prompts, vocab]
    return {
        "prompts": prompts,
        "max_abs_logprob_diff": float(np.abs(diff).max()),
        # Log-probabilities are the logits less a per-row constant; the logits' drift up to that constant:
        "max_logit_drift_up_to_constant": float(((diff.max(axis=1) - diff.min(axis=1)) / 2).max()),
        "top1_equal": [bool(x) for x in lp32.argmax(axis=1) == lp8.argmax(axis=1)],
    }


def same_work(runs: dict[str, list[dict]]) -> dict:
    """Whether the fp32 contenders made the same tokens as transformers (greedy batch 1, and the best beam):
    the same weights and the same search should, so the timings compare the same work. (int8
    is compared with fp32 in agreement(); int4's quality is benchmarks/quality.py's.)"""
    reference = next((r for r in runs.get(TRANSFORMERS, []) if "error" not in r), None)
    out = {}
    for name, repeats in runs.items():
        good = [r for r in repeats if "error" not in r]
        # int8/int4 round the weights; llama.cpp's llama-bench hands no tokens back
        if reference is None or name in (TRANSFORMERS, INT8, INT4, INT8_KV8, INT4_KV8) or not good or "decode_tokens" not in good[0]:
            continue
        out[name] = {k: all(r[k] == reference[k] for r in good) for k in ("decode_tokens", "beam_tokens")}
    return out


def contention(runs: dict[str, list[dict]]) -> dict:
    """Spread over every contender process of the CPU share other processes took meanwhile."""
    return spread([run["others_cpu_share"] for repeats in runs.values() for run in repeats if "others_cpu_share" in run])
