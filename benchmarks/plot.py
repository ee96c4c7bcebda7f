"""decode_vs_context.png: decode tok/s (1000 / per-token latency) against the
context, one line per contender, min-max error bars over repeats. Needs
matplotlib (pip install '.[bench]'); it is imported only here."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .contenders import LABELS, NAMES
from .plan import Plan


def plot(report: dict, plan: Plan, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.2), dpi=120)
    for name in NAMES:
        s = report["summary"].get(name)
        if not s or f"decode_tok_s_ctx{plan.contexts[0]}" not in s:
            continue
        ys = [s[f"decode_tok_s_ctx{c}"] for c in plan.contexts]
        med = np.array([y["median"] for y in ys])  # [contexts]
        err = np.array([[y["median"] - y["min"] for y in ys], [y["max"] - y["median"] for y in ys]])  # [2 (below, above), contexts]
        ax.errorbar(plan.contexts, med, yerr=err, marker="o", capsize=3, label=LABELS[name])
    m = report["machine"]
    ax.set_xlabel("context (tokens)")
    ax.set_ylabel("decode tokens/s (batch 1, greedy)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"GPT-2 124M shape, {m['cpu']}, {m['threads']} threads", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the plot: nine lines would hide under it
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
