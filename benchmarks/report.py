"""The report: speed.md (ratios, absolute figures, targets, bandwidth bound,
int8 against fp32, method), speed.json, and the console summary."""

from __future__ import annotations

import json
from pathlib import Path

from .contenders import LABELS, NAMES
from .plan import BUSY, Plan, all_metrics, metrics
from .stats import Target


def fmt(v: float | None) -> str:
    if v is None:
        return "n/a"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}" if abs(v) >= 0.01 else f"{v:.2g}"


def cell(s: dict | None) -> str:
    if not s:
        return "n/a"
    if s["n"] == 1:
        return fmt(s["median"])
    return f"{fmt(s['median'])} ({fmt(s['min'])}–{fmt(s['max'])})"


def header(report: dict, plan: Plan) -> list[str]:
    """Title, machine, versions, model, bandwidth, contention and same-tokens lines."""
    m = report["machine"]
    lines = [
        "# gpt2onnx speed benchmark",
        "",
        f"`{report['command']}`, {report['date']}. Written by `benchmarks/speed.py`; raw figures in `speed.json`.",
        "",
        f"- machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), {m['memory_gib']} GiB; {m['platform']}, Python {m['python']}",
        f"- threads: {m['threads']} (onnxruntime intra_op_num_threads, torch.set_num_threads); load average {m['loadavg'][0]:.2f} at the start",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + f"; gpt2onnx {m['gpt2onnx_commit']}",
        f"- model: random weights, shape {plan.shape}, seed 0; {report['repeats']} repeat(s), each contender in its own process per repeat",
        f"- memory read bandwidth ({m['threads']} threads, best of {report['bandwidth']['passes']}): {report['bandwidth']['read_gbs']:.1f} GB/s",
    ]
    busy = report["contention"]
    if busy:
        lines.append(f"- other processes used {100 * report['bandwidth']['others_cpu_share']:.0f}% of the CPU during the bandwidth probe")
        lines.append(
            f"- other processes used {100 * busy['median']:.0f}% ({100 * busy['min']:.0f}–{100 * busy['max']:.0f}%) of the machine's CPU "
            f"during the contender processes (hypervisor steal included)" + (": **the machine was busy; these figures are not reliable**" if busy["max"] > BUSY else "")
        )
    for name, why in (report.get("unavailable") or {}).items():
        lines.append(f"- {name} left out: {why}")
    same = report["same_tokens_as_transformers"]
    if same:
        lines.append("- same tokens as transformers (greedy, best beam): " + ", ".join(
            f"{name} {'yes' if all(v.values()) else 'NO: ' + ', '.join(k for k, ok in v.items() if not ok)}" for name, v in same.items()))
    return lines


def tables(report: dict, plan: Plan) -> list[str]:
    """The ratio table (ours ÷ each peer) and the absolute table (every contender)."""
    summary, ratios = report["summary"], report["ratios"]
    present = [c for c in NAMES if c in summary]
    lines = ["Cells: median over repeats (min–max).", "", "## Ratios: ours ÷ peer", ""]
    pairs = [p for p in ratios if ratios[p]]
    lines += ["| metric | better | " + " | ".join(p.replace("gpt2onnx-", "").replace("/", " ÷ ") for p in pairs) + " |", "|" + " --- |" * (2 + len(pairs))]
    for metric in metrics(plan):
        lines.append(f"| {metric.label} | {'higher' if metric.higher_is_better else 'lower'} | " + " | ".join(cell(ratios[p].get(metric.key)) for p in pairs) + " |")
    lines += ["", "## Absolute figures", "", "| metric | unit | " + " | ".join(LABELS[c] for c in present) + " |", "|" + " --- |" * (2 + len(present))]
    for metric in all_metrics(plan):
        lines.append(f"| {metric.label} | {metric.unit} | " + " | ".join(cell(summary[c].get(metric.key)) for c in present) + " |")
    lines.append("| decode tok/s against context | tok/s | " + " | ".join(
        "<br>".join(f"{c}: {fmt(summary[n].get(f'decode_tok_s_ctx{c}', {}).get('median'))}" for c in plan.contexts) for n in present) + " |")
    return lines


def markdown(report: dict, plan: Plan, checks: list[Target]) -> str:
    lines = header(report, plan) + [""] + tables(report, plan)
    lines += ["", "## Targets", "", "```"] + [t.line() for t in checks] + ["```", ""]
    lines += ["## Memory-bandwidth bound", ""]
    for name, w in report["weights"].items():
        bound = report["summary"].get(name, {}).get("bandwidth_bound_tok_s", {}).get("median")
        lines.append(
            f"- {LABELS[name]}: {w['read_bytes_per_token'] / 1e6:.1f} MB of weights read per token ({w['stored_bytes'] / 1e6:.1f} MB stored) "
            f"-> bound {fmt(bound)} tok/s at {report['bandwidth']['read_gbs']:.1f} GB/s"
        )
    agree = report.get("int8_agreement")
    lines += ["", "## int8 against fp32", ""]
    if agree:
        for p in agree["prompts"]:
            state = "equal" if p["equal"] else f"diverge at token {p['first_divergence']}"
            lines.append(f"- `{p['prompt']}`: greedy {p['tokens']} tokens {state}")
        lines.append(f"- max |log-prob difference| over the vocabulary after each prompt: {agree['max_abs_logprob_diff']:.3g} "
                     f"(logit drift up to the softmax constant: {agree['max_logit_drift_up_to_constant']:.3g}); top-1 equal: {agree['top1_equal']}")
        lines.append("- random weights give nearly flat next-token distributions, so small drifts flip greedy choices sooner than a trained model's would")
    else:
        lines.append("- not measured (no int8 contender)")
    lines += ["", "## Method", "", METHOD.format(plan=plan), ""]
    return "\n".join(lines)


METHOD = """\
- Each (contender, repeat) is a fresh process: imports, load, a warm-up generation
  ({plan.warmup_tokens} tokens), then the workloads in this order. Repeats interleave the
  contenders in a rotating order. Ratios are taken per repeat (repeat i of ours ÷ repeat
  i of the peer), then summarised.
- Token times: gpt2onnx runs what its users run, `model.run(...)` and the Run's
  `deltas()` (prefill, steps, detokenizer, stop strings); a token's time is when the
  delta carrying it reaches the caller (a token that ends inside a UTF-8 character
  arrives with the one that completes it). The peers' `generate()` passes each step's
  tokens to a streamer whose `put()` records the time. Greedy, forced to full length
  (`min_new_tokens = max_new_tokens`), prompts of random token ids given as ids.
- decode tok/s = (new tokens − 1) / (last token time − first token time); end-to-end =
  new tokens / whole call. TTFT = call start → first new token.
- per-token latency at context c: prompt of c tokens, then the median of the
  {plan.latency_steps} step-to-step times after the first token (forward passes over
  c+1 … c+{plan.latency_steps} positions); the plot shows 1000 / that latency.
- batch: {plan.batch} different prompts of {plan.prompt_tokens} tokens; aggregate tok/s counts every row's
  tokens; a step's time is when its last row's token arrived.
- beam search: `num_beams={plan.beams}`, tokens of the best sequence / whole call (beams hand
  over their tokens only at the end: gpt2onnx's Run replays the results as deltas).
- load: `load(folder, provider="cpu", threads=T)` (sha256 of every file included;
  the verify=False figure beside it), `ORTModelForCausalLM.from_pretrained`,
  `GPT2LMHeadModel.from_pretrained`. RSS from /proc/self/statm; peak = VmHWM at the end of
  the workloads (ru_maxrss would carry the parent's peak across exec).
- Python overhead (gpt2onnx): (decode wall time − Δ`model.session.run_seconds`) / steps,
  both read as each delta arrives: everything but onnxruntime's run, detokenizing included.
- bandwidth bound = probe read GB/s ÷ weight bytes read per token (initializers of
  model.onnx, embedding rows only for Gather-only tables; the lm_head reads all of wte)."""


def write(out: Path, report: dict, plan: Plan, checks: list[Target]) -> list[Path]:
    """speed.json, speed.md and (with matplotlib) decode_vs_context.png in `out`; the paths written."""
    from .plot import plot

    written = [out / "speed.md", out / "speed.json"]
    (out / "speed.json").write_text(json.dumps(report, indent=1))
    (out / "speed.md").write_text(markdown(report, plan, checks))
    try:
        plot(report, plan, out / "decode_vs_context.png")
        written.append(out / "decode_vs_context.png")
    except ImportError:
        print("note: no plot (matplotlib not installed: pip install '.[bench]')")
    return written


def print_summary(report: dict, plan: Plan, checks: list[Target]) -> None:
    """A few headline figures per contender, the token checks and the targets, on stdout."""
    summary = report["summary"]
    print()
    for name in report["contenders"]:
        s = summary[name]
        print(f"{LABELS[name]:30s} decode {cell(s.get('decode_tok_s'))} tok/s, TTFT {plan.prompt_tokens} {cell(s.get(f'ttft_{plan.prompt_tokens}_ms'))} ms, "
              f"batch {plan.batch} {cell(s.get('batch_tok_s'))} tok/s, beams {cell(s.get('beam_tok_s'))} tok/s, peak RSS {cell(s.get('peak_rss_mb'))} MB")
    print("same tokens as transformers: " + ", ".join(f"{n} {v}" for n, v in report["same_tokens_as_transformers"].items()))
    agree = report["int8_agreement"]
    if agree:
        print(f"int8 vs fp32: greedy equal {[p['equal'] for p in agree['prompts']]}, first divergence {[p['first_divergence'] for p in agree['prompts']]}, "
              f"max |log-prob diff| {agree['max_abs_logprob_diff']:.3g}")
    print()
    for check in checks:
        print(check.line())
    if report["contention"] and report["contention"]["max"] > BUSY:
        print(f"\nwarning: other processes took up to {100 * report['contention']['max']:.0f}% of the CPU during the runs: these figures are not reliable")
