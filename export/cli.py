"""`gpt2onnx export MODEL OUTPUT_DIR`: the command-line face of the exporter.

Only argparse at import time: the heavy stack (torch, transformers, optimum)
loads when the command runs, so `gpt2onnx generate` never pays for it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json

from gpt2onnx.runtime.errors import UsageError

EXPORT_STACK = ("torch", "transformers", "optimum.exporters.onnx", "accelerate")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a GPT-2 checkpoint to a validated ONNX folder",
        description="Export a GPT-2 checkpoint (a local folder or a hub id) to ONNX with Optimum, "
        "validate it against PyTorch and write it atomically to OUTPUT_DIR.",
    )
    parser.add_argument("model", metavar="MODEL", help="checkpoint folder (GPT2LMHeadModel + tokenizer) or hub id such as gpt2")
    parser.add_argument("output_dir", metavar="OUTPUT_DIR", help="folder to create; refused if it exists and is not empty")
    parser.add_argument("--force", action="store_true", help="replace a non-empty OUTPUT_DIR")
    parser.add_argument(
        "--int8",
        action="store_const",
        const="int8",
        dest="weights",
        default="float32",
        help="int8 weights (onnxruntime dynamic quantization): about 4x smaller and faster on CPU",
    )
    parser.add_argument(
        "--int4",
        action="store_const",
        const="int4",
        dest="weights",
        help="4-bit weights in blocks of 32 (onnxruntime's MatMulNBits): about 7x smaller matrices, for CPU",
    )
    parser.add_argument(
        "--float16", action="store_const", const="float16", dest="weights", help="float16 weights, KV cache and logits: for CUDA"
    )
    parser.add_argument(
        "--kv-cache-dtype",
        choices=("auto", "float32", "int8"),
        default="auto",
        help="the KV cache's element type; auto (default): the weights' float type; int8: a quarter of float32's "
        "bytes (faster decoding at long contexts and in batches, 4x less memory per slot; slower prefill), for CPU exports",
    )
    parser.add_argument(
        "--graph",
        choices=("gqa", "optimum"),
        default="gqa",
        help="gqa (default): GroupQueryAttention with an in-place KV cache; optimum: Optimum's graph as exported",
    )
    parser.add_argument(
        "--atol",
        type=float,
        default=None,
        help="max abs logit difference from PyTorch accepted (default 1e-3, classifiers 1e-4; int8 and float16: 10%% and 1%% of the largest logit)",
    )
    parser.add_argument("--json", action="store_true", help="print a machine-readable report on stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument("--verbose", action="store_true", help="show the exporter's own logs and warnings")
    parser.set_defaults(run=run)


def _require_export_stack() -> None:
    missing = [name for name in EXPORT_STACK if importlib.util.find_spec(name.split(".")[0]) is None]
    if missing or importlib.util.find_spec("optimum.exporters.onnx") is None:
        raise UsageError("the exporter is not installed (torch, transformers, optimum-onnx): pip install 'gpt2onnx[export]'")


def run(args: argparse.Namespace) -> int:
    _require_export_stack()
    from .optimize import GraphPlan
    from .pipeline import export_model
    from .progress import Progress

    if args.atol is not None and not args.atol > 0:
        raise UsageError(f"--atol must be > 0, got {args.atol}")
    progress = Progress.for_terminal(5, quiet=args.quiet or args.json)
    plan = GraphPlan(args.graph, args.weights, args.kv_cache_dtype)
    report = export_model(args.model, args.output_dir, force=args.force, atol=args.atol, progress=progress, verbose=args.verbose, plan=plan)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    elif not args.quiet:
        v = report.validation
        print(
            f"exported {args.model} to {report.output_dir} ({report.total_bytes / 1e6:.1f} MB) in {report.seconds['total']:.1f} s; "
            f"max |logit diff| vs PyTorch {v['max_abs_diff']:.2e} (atol {v['atol']:g})"
        )
    return 0
