"""Take a screenshot of the real app window, for the README.

    xvfb-run -a -s "-screen 0 1280x800x24" .venv/bin/python -m gpt2onnx.desktop.screenshot docs/desktop.png

(`make screenshot` does this.) Under Xvfb the window runs on Qt's xcb
platform, as on a desktop: the script types a prompt, asks for a completion
with Ctrl+Enter, lets it stream, selects a generated token so the inspector
shows its alternatives, turns on the probability colours, and grabs the X
screen's pixels around the window.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="PNG file to write")
    parser.add_argument("--model", default=None, help="export folder (default: the shipped model)")
    parser.add_argument("--prompt", default="The secret of happiness is")
    args = parser.parse_args(argv)

    from PySide6.QtCore import QSettings, Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from .settings import PRESETS
    from .window import MainWindow

    app = QApplication.instance() or QApplication(["gpt2onnx"])
    tmp = Path(tempfile.mkdtemp(prefix="gpt2onnx-shot-"))
    window = MainWindow(QSettings(str(tmp / "s.ini"), QSettings.Format.IniFormat), tmp, args.model, "auto")
    window.resize(1180, 680)
    window.move(40, 40)
    window.show()
    window.activateWindow()
    QTest.qWaitForWindowActive(window)  # shortcuts reach an active window only

    def wait_until(condition, timeout_s=60.0):
        deadline = time.perf_counter() + timeout_s
        while not condition():
            QTest.qWait(10)
            if time.perf_counter() > deadline:
                raise SystemExit("error: the window did not get there in time")

    wait_until(lambda: window.model is not None)
    window.panel.set_settings(dataclasses.replace(PRESETS["Balanced sampling"], max_new_tokens=30, seed=7))
    window.editor.setFocus()
    QTest.keyClicks(window.editor, args.prompt)
    window.last_stats = None
    QTest.keyClick(window.editor, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    wait_until(lambda: window.last_stats is not None and not window.streaming)
    window.colour_action.setChecked(True)
    if len(window.tracker.spans) > 3:
        span = window.tracker.spans[3]
        cursor = window.editor.textCursor()
        cursor.setPosition(span.start)
        cursor.setPosition(span.end, cursor.MoveMode.KeepAnchor)
        window.editor.setTextCursor(cursor)
    QTest.qWait(300)  # let the window paint
    frame = window.frameGeometry()
    shot = window.screen().grabWindow(0, frame.x(), frame.y(), frame.width(), frame.height())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not shot.save(str(args.out)):
        raise SystemExit(f"error: could not write {args.out}")
    print(f"{args.out} ({shot.width()}x{shot.height()}, platform {app.platformName()})")
    window.reject_completion()
    window.editor.document().setModified(False)  # nothing to save: close without asking
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
