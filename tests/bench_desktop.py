"""Benchmark: how responsive the desktop app stays while it generates.

    .venv/bin/python tests/bench_desktop.py [--model DIR] [--tokens 300] [--preset NAME] [--colours] [--json]

Runs the real window (offscreen unless QT_QPA_PLATFORM says otherwise, e.g.
xcb under Xvfb) and measures:
- event-loop lag: a 5 ms QTimer records how late each tick fires during a
  generation of --tokens new tokens (greedy, or --preset's settings); the longest stall is the longest
  time the UI thread could not react;
- cancel latency: from pressing Esc mid-stream to the worker's finish, over
  10 generations;
- regenerate: time to first token of a completion at the end of a 900-token
  document, then of Ctrl+R on it (the slot engine reuses the document's keys
  and values), over 3 documents.
Without --model it exports a random-init GPT-2 in the real 124M shape
(n_positions 1024, so 300 tokens fit), which needs the export extra.
It is a benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def random_gpt2_small(root: Path) -> str:
    from gpt2onnx.export import export_model
    from gpt2onnx.export.random_model import GPT2_SMALL, make_random_gpt2

    checkpoint = make_random_gpt2(root / "checkpoint", seed=0, **GPT2_SMALL)
    export_model(str(checkpoint), root / "onnx")
    return str(root / "onnx")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="export folder (default: a random gpt2-124M-shape export)")
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--colours", action="store_true", help="colour tokens by probability (a selection per token)")
    parser.add_argument("--preset", default="Greedy", help="decoding preset (Beam search: the best beam arrives at the end)")
    args = parser.parse_args()

    from PySide6.QtCore import QElapsedTimer, QEventLoop, QSettings, Qt, QTimer
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from gpt2onnx.desktop.settings import PRESETS
    from gpt2onnx.desktop.window import MainWindow

    tmp = Path(tempfile.mkdtemp(prefix="bench-desktop-"))
    model = args.model or random_gpt2_small(tmp)
    app = QApplication.instance() or QApplication([])
    window = MainWindow(QSettings(str(tmp / "s.ini"), QSettings.Format.IniFormat), tmp / "recovery", model, "cpu")
    window.show()

    def wait_until(condition, timeout_s=120.0):
        """Run the event loop, as the app does, until `condition()` holds (checked every 10 ms)."""
        loop = QEventLoop()
        poll = QTimer(interval=10)
        poll.timeout.connect(lambda: condition() and loop.quit())
        poll.start()
        deadline = time.perf_counter() + timeout_s
        while not condition():
            loop.exec()
            if time.perf_counter() > deadline:
                raise SystemExit("timed out")
        poll.stop()

    wait_until(lambda: window.model is not None)
    window.colour_action.setChecked(args.colours)
    # No penalties: a random model's long greedy run must not stop early on a banned repeat.
    settings = dataclasses.replace(PRESETS[args.preset], max_new_tokens=args.tokens, repetition_penalty=1.0, no_repeat_ngram_size=0)
    beams = settings.num_beams > 1
    window.panel.set_settings(settings)
    window.editor.setPlainText("Once upon a time")
    cursor = window.editor.textCursor()
    cursor.movePosition(cursor.MoveOperation.End)
    window.editor.setTextCursor(cursor)

    # Event-loop lag during one long generation.
    gaps: list[float] = []
    clock = QElapsedTimer()
    ticker = QTimer(interval=5)
    last = [0]

    def tick():
        now = clock.elapsed()
        gaps.append(now - last[0])
        last[0] = now

    ticker.timeout.connect(tick)
    window.last_stats = None
    clock.start()
    ticker.start()
    window.complete_action.trigger()
    wait_until(lambda: window.last_stats is not None and not window.streaming)
    ticker.stop()
    stats = window.last_stats
    window.reject_completion()
    lag = {
        "new_tokens": stats.new_tokens,
        "tokens_per_second": round(stats.tokens_per_second, 1),
        "ticks": len(gaps),
        "longest_stall_ms": max(gaps) - 5,
        "p99_stall_ms": sorted(gaps)[int(0.99 * (len(gaps) - 1))] - 5,
    }

    # Cancel latency: Esc after a few tokens, 10 times.
    latencies = []
    for _ in range(10):
        window.last_stats = None
        window.complete_action.trigger()
        asked = time.perf_counter()
        wait_until(lambda: len(window.tracker.spans) >= 5 or beams and time.perf_counter() - asked > 0.3)  # beams stream at the end
        QTest.keyClick(window.editor, Qt.Key.Key_Escape)
        wait_until(lambda: window.last_stats is not None and not window.streaming)
        latencies.append(window.last_cancel_latency * 1000)
        window.reject_completion()
    cancel = {"median_ms": round(statistics.median(latencies), 1), "max_ms": round(max(latencies), 1)}

    # Regenerate: the first completion runs the whole document, Ctrl+R only its last token.
    window.panel.set_settings(dataclasses.replace(settings, max_new_tokens=20))
    text = (Path(__file__).parent / "data" / "default_model" / "heldout.txt").read_text()
    firsts, regenerates = [], []
    for i in range(3):
        ids = window.model.tokenizer.encode(text)[i * 1000 : i * 1000 + 900]  # 900 tokens, a new document each time
        window.editor.setPlainText(window.model.tokenizer.decode(ids))
        window.editor.moveCursor(window.editor.textCursor().MoveOperation.End)
        for action, times in ((window.complete_action, firsts), (window.regenerate_action, regenerates)):
            window.last_stats = None
            action.trigger()
            wait_until(lambda: window.last_stats is not None and not window.streaming)
            times.append(window.last_stats.first_token_s * 1000)
        reused = window.last_stats.reused_tokens
        window.reject_completion()
    regenerate = {
        "document_tokens": len(window.model.tokenizer.encode(window.editor.toPlainText())),
        "reused_tokens": reused,
        "first_ms": round(statistics.median(firsts), 1),
        "regenerate_ms": round(statistics.median(regenerates), 1),
        "ratio": round(statistics.median(firsts) / statistics.median(regenerates), 1),
    }

    result = {"model": model, "platform": app.platformName(), "preset": args.preset, "colours": args.colours, "event_loop": lag, "cancel": cancel, "regenerate": regenerate}
    window.reject_completion()
    window.editor.document().setModified(False)  # nothing to save: close without asking
    window.close()
    if args.json:
        print(json.dumps(result))
    else:
        print(f"model {model} on {app.platformName()}, {args.preset}{', tokens coloured by probability' if args.colours else ''}")
        print(f"{lag['new_tokens']} tokens at {lag['tokens_per_second']} tok/s: longest event-loop stall {lag['longest_stall_ms']} ms, p99 {lag['p99_stall_ms']} ms over {lag['ticks']} ticks")
        print(f"cancel latency over 10 stops: median {cancel['median_ms']} ms, max {cancel['max_ms']} ms")
        print(f"time to first token at the end of a {regenerate['document_tokens']}-token document: first completion "
              f"{regenerate['first_ms']} ms, regenerate {regenerate['regenerate_ms']} ms ({regenerate['ratio']}x faster; "
              f"{regenerate['reused_tokens']} tokens reused), medians of 3")
    return 0


if __name__ == "__main__":
    sys.exit(main())
