"""`gpt2onnx classify TEXT...`: the labels a GPT2ForSequenceClassification export gives
texts, one line per text (the most likely labels with their probabilities, then
the text), or with --json one object like `score --json`'s: model, provider,
results (one per text) and timing.

Argparse and the runtime only, like commands.py, whose model flags and text
reading it shares.
"""

from __future__ import annotations

import argparse
import json
import time

from . import contract
from .commands import _add_model_arguments, _load, _read_texts

SHOWN_LABELS = 3  # labels per line in the plain output, most likely first (--json gives all)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "classify",
        help="label texts with an exported GPT2ForSequenceClassification model",
        description="Classify each TEXT with a GPT2ForSequenceClassification export: one line per text with the "
        f"{SHOWN_LABELS} most likely labels and their probabilities, or with --json one JSON object whose results "
        'hold {"text", "label", "probabilities"} per text (every label, in label-id order).',
    )
    parser.add_argument("texts", nargs="+", metavar="TEXT", help="text to classify; '-' reads standard input")
    _add_model_arguments(parser, json_help="print one JSON object (model, provider, results, timing) instead of text")
    parser.set_defaults(run=_run_classify)


def _line(result) -> str:
    """`positive 0.930  negative 0.070  'the text'`: the most likely labels first, the text quoted on one line."""
    ranked = sorted(result.probabilities.items(), key=lambda item: -item[1])[:SHOWN_LABELS]
    excerpt = result.text if len(result.text) <= 60 else result.text[:57] + "..."
    return "  ".join(f"{label} {p:.3f}" for label, p in ranked) + f"  {excerpt!r}"


def _run_classify(args: argparse.Namespace) -> int:
    from .model import check_task

    texts = _read_texts(args.texts, "TEXT")
    check_task(args.model, contract.TEXT_CLASSIFICATION)  # a generator is refused before the slow load
    model, load_s = _load(args)
    started = time.perf_counter()
    results = model.classify(texts)
    classify_s = time.perf_counter() - started
    if args.json:
        rows = [{"text": r.text, "label": r.label, "probabilities": r.probabilities} for r in results]
        print(json.dumps({"model": str(model.folder), "provider": model.provider, "results": rows, "timing": {"load_s": load_s, "classify_s": classify_s}}))
    else:
        for result in results:
            print(_line(result))
    return 0
