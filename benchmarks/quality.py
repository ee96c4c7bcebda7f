"""Quality of the quantized formats: the shipped default model's held-out perplexity at
float32, int8 and int4, the way llama.cpp reports its quant types' perplexity.

    .venv/bin/python -m benchmarks.quality [--out docs/quality] [--work DIR]

The shipped model has trained weights (the speed benchmark's are random, where
perplexity means nothing). Its training checkpoint is not kept, so it is
rebuilt from the float32 export (export/rebuild.py) and exported again with
`gpt2onnx export`, `--int8` and `--int4`. Each is scored by the runtime on
the 781 held-out fortune cookies (tests/data/default_model/, framed as in
training), and the float32 figure must equal the one training.json recorded.
Targets: int8 within 1% of float32's perplexity, int4 within 5%.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HELDOUT = REPO / "tests" / "data" / "default_model" / "heldout.txt"
# (weights, KV cache) pairs measured: each format as `gpt2onnx export` makes it by default
# (float32 KV cache) and with --kv-cache-dtype int8, so the table shows what that cache costs.
VARIANTS = (("float32", "float32"), ("float32", "int8"), ("int8", "float32"), ("int8", "int8"), ("int4", "float32"), ("int4", "int8"))
BASE = "float32, float32 KV"  # each variant's name: f"{weights}, {kv} KV"
TARGETS = {"float32": 0.01, "int8": 0.01, "int4": 0.05}  # largest perplexity increase over BASE accepted, by weights, with either KV cache


def heldout_texts() -> list[str]:
    """The held-out cookies framed as the training script frames them (one copy of that code)."""
    sys.path.insert(0, str(REPO / "training"))
    try:
        training = importlib.import_module("train_default_model")
    finally:
        sys.path.remove(str(REPO / "training"))
    docs = HELDOUT.read_text(encoding="utf-8").removesuffix("\n").split("\n%\n")
    return training.heldout_texts(docs)


def perplexity(folder: Path, texts: list[str]) -> tuple[float, int]:
    from gpt2onnx.runtime import load

    scores = load(folder, provider="cpu").score(texts)
    tokens = sum(s.token_count for s in scores)
    return math.exp(-sum(s.logprob for s in scores) / tokens), tokens


def measure(work: Path) -> dict:
    """Rebuild, export at every precision, score; {weights: figures}."""
    from gpt2onnx.export.optimize import GraphPlan
    from gpt2onnx.export.pipeline import export_model
    from gpt2onnx.export.rebuild import rebuild_checkpoint
    from gpt2onnx.runtime import DEFAULT_MODEL

    checkpoint = rebuild_checkpoint(DEFAULT_MODEL, work / "checkpoint")
    texts = heldout_texts()
    out = {}
    for weights, kv in VARIANTS:
        name, folder = f"{weights}, {kv} KV", work / f"{weights}-{kv}-kv"
        report = export_model(str(checkpoint), folder, force=True, plan=GraphPlan(weights=weights, kv_cache_dtype=kv))
        start = time.perf_counter()
        ppl, tokens = perplexity(folder, texts)
        out[name] = {"weights": weights, "kv_cache_dtype": kv, "perplexity": ppl, "tokens": tokens, "score_s": time.perf_counter() - start,
                        "model_bytes": (folder / "model.onnx").stat().st_size,
                        "top1_agreement": report.validation["top1_agreement"],
                        "max_abs_diff_of_scale": report.validation["max_abs_diff"] / report.validation["logit_scale"]}
    return out


def report(figures: dict, recorded: float) -> tuple[str, list[str]]:
    base = figures[BASE]["perplexity"]
    lines = ["# gpt2onnx quality: held-out perplexity by weight format", "",
             f"`python -m benchmarks.quality`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. The shipped default model "
             f"(6 layers, 96 wide, trained on fortune cookies), {figures[BASE]['tokens']:,} held-out tokens. "
             "The KV cache is float32 unless the export asks for `--kv-cache-dtype int8`.", "",
             "| weights | KV cache | perplexity | vs float32 | top-1 agreement with PyTorch | max logit drift / logit scale | model.onnx |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for f in figures.values():
        lines.append(f"| {f['weights']} | {f['kv_cache_dtype']} | {f['perplexity']:.4f} | {f['perplexity'] / base - 1:+.2%} | {f['top1_agreement']:.3f} | "
                     f"{f['max_abs_diff_of_scale']:.1%} | {f['model_bytes'] / 1e6:.1f} MB |")
    checks = [f"{'PASS' if abs(base - recorded) <= 1e-4 * recorded else 'FAIL'}  float32 rebuilt: {base:.4f} (training.json: {recorded})"]
    for name, f in figures.items():
        if name != BASE:
            rise, limit = f["perplexity"] / base - 1, TARGETS[f["weights"]]
            checks.append(f"{'PASS' if rise <= limit else 'FAIL'}  {name} perplexity {rise:+.2%} over float32 (target <= {limit:.0%})")
    lines += ["", "The embeddings stay float32 in every format (a lookup, not a MatMul), and the int formats store the output "
              "layer apart from them, so at this model's size (the embeddings are 87% of it) the quantized files are not smaller.",
              "", "```", *checks, "```", ""]
    return "\n".join(lines), checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/quality")
    parser.add_argument("--work", default=None, help="folder for the rebuilt checkpoint and exports (default: a temporary one)")
    args = parser.parse_args()
    from gpt2onnx.runtime import DEFAULT_MODEL

    recorded = json.loads((DEFAULT_MODEL / "training.json").read_text())["evaluation"]["heldout_perplexity"]
    with tempfile.TemporaryDirectory(prefix="gpt2onnx-quality-") as tmp:
        figures = measure(Path(args.work) if args.work else Path(tmp))
    markdown, checks = report(figures, recorded)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "quality.md").write_text(markdown)
    (out / "quality.json").write_text(json.dumps(figures, indent=1))
    print("\n".join(checks))
    return 0 if all(c.startswith("PASS") for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
