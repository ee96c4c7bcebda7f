"""gpt2onnx.desktop: the PySide6 text-completion app.

    gpt2onnx desktop [--model DIR] [--provider auto|cpu|cuda]
    gpt2onnx-desktop                       # the same, as a GUI script

Needs PySide6 (`pip install 'gpt2onnx[desktop]'`). Importing this package is
cheap; Qt loads when the app starts (gpt2onnx.desktop.app.main).
"""


def add_arguments(parser) -> None:
    """The desktop command's arguments (argparse only: no Qt import), shared by
    `gpt2onnx desktop` and the `gpt2onnx-desktop` launcher."""
    from gpt2onnx.runtime.providers import PROVIDERS

    parser.add_argument("--model", metavar="DIR", default=None, help="an export folder (default: the last one used, else the shipped model)")
    parser.add_argument("--provider", choices=PROVIDERS, default=None, help="where to run (default: the last one used, else auto)")
