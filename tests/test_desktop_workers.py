"""The desktop app's generation workers: a stop whose wait for the worker times out
must not let the next generation run beside it.

Both workers would share the model's one slot engine. The worker here stands in
for a step that outlasts the stop's wait: its run() holds until the test lets it
go, and every run() records when it enters and leaves, so an overlap is seen
whenever it happens, not guessed from timings.
"""

from __future__ import annotations

import os
import threading

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
from PySide6.QtCore import QSettings, Signal, Slot
from PySide6.QtWidgets import QApplication, QMessageBox

from gpt2onnx.desktop import controller
from gpt2onnx.desktop.worker import GenerationStats, Job
from gpt2onnx.desktop.window import MainWindow

PROMPT = "Once upon a time"


class Overlaps:
    """What the stand-in workers did, shared between their threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.release = threading.Event()  # lets every held run() go on
        self.workers: list[Job] = []
        self.log: list[tuple[str, int]] = []  # ("enter" | "leave", worker number), in order
        self.running = self.most = 0  # run()s inside now, and the most ever at once
        self.early = ""  # text each worker sends as soon as it starts, before it holds


@pytest.fixture
def overlaps(monkeypatch):
    seen = Overlaps()

    class HeldWorker(Job):
        """GenerationWorker's signals and cancel(), and a run() that holds. Not a subclass of
        GenerationWorker: PySide6 6.11 calls a subclass's override of the run() slot, connected
        to QThread.started, on the UI thread instead of the worker's own."""

        context = Signal(int, int)
        token = Signal(str, object)
        beam = Signal(object)
        finished = Signal(object)

        def __init__(self, *args, **kwargs):  # the model, prompt, ... GenerationWorker takes
            super().__init__()
            self.number = len(seen.workers) + 1
            self.entered = threading.Event()
            seen.workers.append(self)

        def cancel(self) -> None:
            pass  # asked, and not heeded in time: the step holds

        @Slot()
        def run(self) -> None:
            with seen.lock:
                seen.running += 1
                seen.most = max(seen.most, seen.running)
                seen.log.append(("enter", self.number))
            if seen.early:
                self.token.emit(seen.early, [])
            self.entered.set()
            seen.release.wait(30)  # a step that does not see the cancel in time
            with seen.lock:
                seen.running -= 1
                seen.log.append(("leave", self.number))
            self.token.emit(f" worker {self.number}", [])
            self.finished.emit(GenerationStats("length", 1, 1.0))

    monkeypatch.setattr(controller, "GenerationWorker", HeldWorker)
    yield seen
    seen.release.set()  # never leave a thread held


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch, overlaps):
    window = MainWindow(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat), tmp_path / "recovery", None, "cpu")
    window.show()
    qtbot.waitUntil(lambda: window.model is not None, timeout=30000)
    yield window
    overlaps.release.set()  # first: closing waits for every worker's thread to end
    # Closing asks about the unsaved prompt: answer it rather than block the offscreen test.
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: QMessageBox.StandardButton.Discard)
    window.close()


def test_a_stop_that_times_out_never_runs_two_workers_at_once(qtbot, window, overlaps):
    window.controller.stop_wait_ms = 10  # far shorter than the held step
    window.editor.setPlainText(PROMPT)
    window.editor.moveCursor(window.editor.textCursor().MoveOperation.End)

    window.complete_action.trigger()
    first = overlaps.workers[0]
    qtbot.waitUntil(first.entered.is_set, timeout=10000)
    window.regenerate()  # stops the first worker, waits 10 ms in vain, and asks for a second
    assert len(overlaps.workers) == 2 and window.streaming

    # A worker moved to a thread of its own has been started: let each such one reach run()
    # before the first is let go, so that running beside the first can't go unseen.
    main = QApplication.instance().thread()
    started = [worker for worker in overlaps.workers if worker.thread() is not main]
    qtbot.waitUntil(lambda: all(worker.entered.is_set() for worker in started), timeout=10000)
    assert overlaps.most == 1, overlaps.log
    assert overlaps.log == [("enter", 1)]  # the second waits for the first's thread to end

    window.last_stats = None
    overlaps.release.set()
    qtbot.waitUntil(lambda: window.last_stats is not None and not window.streaming, timeout=10000)
    assert overlaps.most == 1, overlaps.log
    assert overlaps.log == [("enter", 1), ("leave", 1), ("enter", 2), ("leave", 2)]
    # The stopped worker was cut off: what it sent after the stop never reached the document.
    assert window.editor.toPlainText() == PROMPT + " worker 2"
    assert window.tracker.pending


def test_what_a_stopped_worker_sent_before_the_stop_is_dropped_too(qtbot, window, overlaps):
    """Qt still delivers a queued signal after its connection is gone: cutting a worker off
    must also drop what it had sent before, still queued to the UI thread."""
    overlaps.early = " early"
    window.controller.stop_wait_ms = 10
    window.editor.setPlainText(PROMPT)
    window.editor.moveCursor(window.editor.textCursor().MoveOperation.End)
    window.complete_action.trigger()
    # Waited for on the UI thread without running its event loop: " early" stays queued.
    assert overlaps.workers[0].entered.wait(10)
    window.reject_completion()  # Esc Esc: stop (waiting 10 ms in vain), cut off, reject
    overlaps.release.set()
    qtbot.waitUntil(lambda: not window.controller.jobs.busy(), timeout=10000)  # its thread ended, after its last signal
    assert window.editor.toPlainText() == PROMPT
    assert not window.tracker.pending and not window.tracker.spans and not window.streaming
