"""Starting the desktop app: the QApplication, the window and crash recovery.

`main()` is the `gpt2onnx-desktop` GUI script; `gpt2onnx desktop` calls `run()`.
"""

from __future__ import annotations

import argparse
import sys

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from . import add_arguments
from .window import APP_NAME, MainWindow


def run(model: str | None = None, provider: str | None = None) -> int:
    """Show the window and run the event loop; returns the exit code."""
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setOrganizationName(APP_NAME)
    app.setApplicationName("desktop")
    app.setApplicationDisplayName("gpt2onnx")
    window = MainWindow(model_folder=model, provider=provider)
    window.show()
    QTimer.singleShot(0, window.files.offer_recovery)
    return app.exec()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpt2onnx-desktop", description="GPT-2 text completion in a desktop editor.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run(args.model, args.provider)


if __name__ == "__main__":
    sys.exit(main())
