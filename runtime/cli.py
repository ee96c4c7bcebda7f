"""The `gpt2onnx` command line: `export` and `generate`.

Exit codes: 0 success, 2 bad usage or input, 1 any other failure, 130 when
interrupted (143 on SIGTERM). Errors are one line on stderr; set
GPT2ONNX_DEBUG=1 for the traceback of an unexpected one.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
import warnings
from importlib import metadata

from .errors import Gpt2OnnxError
from .providers import PROVIDERS, ProviderFallbackWarning


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _version() -> str:
    try:
        return metadata.version("gpt2onnx")
    except metadata.PackageNotFoundError:
        return "unknown"


def _add_generate_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="complete prompts with an exported model",
        description="Complete each PROMPT greedily, streaming the text, or print one JSON object with --json.",
    )
    parser.add_argument("prompts", nargs="+", metavar="PROMPT", help="text to complete; '-' reads standard input")
    parser.add_argument("--model", required=True, metavar="DIR", help="an export folder made by 'gpt2onnx export'")
    parser.add_argument("--max-new-tokens", type=int, default=50, metavar="N", help="new tokens at most (default 50)")
    parser.add_argument("--provider", choices=PROVIDERS, default="auto", help="where to run (default auto: CUDA if it works, else CPU)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of streaming text")
    parser.add_argument("--no-verify", action="store_true", help="skip the sha256 check of the model files (faster load)")
    parser.add_argument("--threads", type=int, default=None, metavar="N", help="onnxruntime intra-op threads (default: all cores)")
    parser.set_defaults(run=_run_generate)


def _read_prompts(prompts: list[str]) -> list[str]:
    return [sys.stdin.buffer.read().decode("utf-8", errors="replace") if p == "-" else p for p in prompts]


def _run_generate(args: argparse.Namespace) -> int:
    from .config import GenerationConfig
    from .model import load

    settings = {"max_new_tokens": args.max_new_tokens}
    GenerationConfig(**settings)  # bad settings fail before the model loads
    prompts = _read_prompts(args.prompts)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProviderFallbackWarning)  # said below in one line instead
        model = load(args.model, provider=args.provider, verify=not args.no_verify, threads=args.threads)
    load_s = time.perf_counter() - started
    if model.provider_note:
        print(f"gpt2onnx: note: {model.provider_note}", file=sys.stderr)
    config = model.config(**settings)
    results, prefill_s, decode_s, new_tokens = [], 0.0, 0.0, 0
    for prompt in prompts:
        stream = model.stream(prompt, config)
        if not args.json:
            sys.stdout.write(prompt)
            for delta in stream:
                sys.stdout.write(delta)
                sys.stdout.flush()
            sys.stdout.write("\n")
        else:
            for _ in stream:
                pass
        c = stream.completion
        results.append(
            {
                "prompt": prompt,
                "sequences": [{"token_ids": c.token_ids, "text": c.text, "finish_reason": c.finish_reason}],
            }
        )
        prefill_s += c.timing.prefill_s
        decode_s += c.timing.decode_s
        new_tokens += c.timing.new_tokens
    if args.json:
        timing = {"load_s": load_s, "prefill_s": prefill_s, "decode_s": decode_s, "new_tokens": new_tokens}
        print(json.dumps({"provider": model.provider, "provider_note": model.provider_note, "results": results, "timing": timing}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from gpt2onnx.export import cli as export_cli  # argparse only; the export stack loads when it runs

    parser = _Parser(prog="gpt2onnx", description="Export GPT-2 checkpoints to ONNX and run them with numpy + onnxruntime.")
    parser.add_argument("--version", action="version", version=f"gpt2onnx {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    export_cli.add_parser(subparsers)
    _add_generate_parser(subparsers)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so partial work is cleaned up on the way out."""


def _sigterm(signum, frame):
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        return args.run(args)
    except Gpt2OnnxError as e:
        print(f"gpt2onnx: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:
        print("gpt2onnx: interrupted", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (e.g. `| head`): not an error worth a message
        return 1
    except Exception as e:  # a bug or an environment failure: one line unless debugging
        if os.environ.get("GPT2ONNX_DEBUG"):
            traceback.print_exc()
        print(f"gpt2onnx: error: {type(e).__name__}: {e} (set GPT2ONNX_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
