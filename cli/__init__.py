"""gpt2onnx.cli: the `gpt2onnx` command, with `export`, `generate`, `score`, `classify`, `desktop` and `serve`.

The umbrella over the three packages: the runtime's commands (runtime/commands.py),
the exporter's (export/cli.py) and the desktop app's arguments. It lives outside
the runtime so that gpt2onnx.runtime never imports the exporter or Qt (the export
package imports the runtime, not the other way round).

Exit codes: 0 success, 2 bad usage or input, 1 any other failure, 130 when
interrupted (143 on SIGTERM). Errors are one line on stderr; set
GPT2ONNX_DEBUG=1 for the traceback of an unexpected one.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from importlib import metadata

from gpt2onnx.export import cli as export_cli  # argparse only; the export stack loads when it runs
from gpt2onnx.runtime import commands
from gpt2onnx.runtime.commands import Parser, one_line
from gpt2onnx.runtime.errors import Gpt2OnnxError, UsageError


def _version() -> str:
    try:
        return metadata.version("gpt2onnx")
    except metadata.PackageNotFoundError:
        return "unknown"


def _add_desktop_parser(subparsers) -> None:
    from gpt2onnx.desktop import add_arguments  # argparse only; Qt loads when the app runs

    parser = subparsers.add_parser("desktop", help="open the desktop text-completion app", description="Open the PySide6 app.")
    add_arguments(parser)
    parser.set_defaults(run=_desktop)


def _desktop(args: argparse.Namespace) -> int:
    import importlib.util

    if importlib.util.find_spec("PySide6") is None:
        raise UsageError("the desktop app needs PySide6: pip install 'gpt2onnx[desktop]'")
    from gpt2onnx.desktop.app import run

    return run(args.model, args.provider)


def _add_serve_parser(subparsers) -> None:
    from gpt2onnx.serve import add_arguments  # argparse only; FastAPI loads when the server runs

    parser = subparsers.add_parser(
        "serve",
        help="serve a model over OpenAI's HTTP API",
        description="An OpenAI-compatible HTTP server (completions, chat, streaming) with continuous batching.",
    )
    add_arguments(parser)
    parser.set_defaults(run=_serve)


def _serve(args: argparse.Namespace) -> int:
    from gpt2onnx.serve.command import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="gpt2onnx", description="Export GPT-2 checkpoints to ONNX and run them with numpy + onnxruntime.")
    parser.add_argument("--version", action="version", version=f"gpt2onnx {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)
    export_cli.add_parser(subparsers)
    commands.add_parsers(subparsers)
    _add_desktop_parser(subparsers)
    _add_serve_parser(subparsers)
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
        print(f"gpt2onnx: error: {one_line(str(e))}", file=sys.stderr)
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
        print(f"gpt2onnx: error: {type(e).__name__}: {one_line(str(e))} (set GPT2ONNX_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
