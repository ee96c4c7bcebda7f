"""The desktop app, driven like a person would with pytest-qt, offscreen:
complete / accept / reject, stop and undo, the token inspector's branching,
settings persistence, a bad model folder, files, and crash recovery.

The window runs the shipped default model on the CPU; every generation goes
through the real worker thread.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
from PySide6.QtCore import QEvent, QPointF, QSettings, Qt
from PySide6.QtGui import QMouseEvent, QTextCursor, QTextDocument
from PySide6.QtWidgets import QApplication, QMessageBox

from gpt2onnx.desktop.completion import CompletionTracker, document_text
from gpt2onnx.desktop.inspector import percent
from gpt2onnx.desktop.recovery import RecoveryStore
from gpt2onnx.desktop.settings import PRESETS
from gpt2onnx.desktop.styling import PENDING_COLOUR, probability
from gpt2onnx.desktop.window import MainWindow

PROMPT = "Once upon a time"
GREEDY = dataclasses.replace(PRESETS["Greedy"], max_new_tokens=12)


@pytest.fixture(autouse=True)
def dialogs(monkeypatch):
    """Modal dialogs would block an offscreen test: answer them, and record what was asked."""
    asked = []

    def answer(kind, default):
        def ask(parent, title, text, *args, **kwargs):
            asked.append((kind, title, text))
            return dialogs_answers.get(kind, default)

        return ask

    dialogs_answers: dict = {}
    monkeypatch.setattr(QMessageBox, "warning", answer("warning", QMessageBox.StandardButton.Discard))
    monkeypatch.setattr(QMessageBox, "question", answer("question", QMessageBox.StandardButton.No))
    return asked, dialogs_answers


@pytest.fixture
def make_window(qtbot, tmp_path):
    def make(model_folder=None, provider="cpu", settings: QSettings | None = None, wait=True) -> MainWindow:
        store = settings or QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
        window = MainWindow(settings=store, recovery_dir=tmp_path / "recovery", model_folder=model_folder, provider=provider)
        qtbot.addWidget(window)
        window.show()
        qtbot.waitExposed(window)
        if wait:
            qtbot.waitUntil(lambda: window.model is not None, timeout=30000)
        return window

    return make


def type_text(qtbot, window: MainWindow, text: str) -> None:
    window.editor.setFocus()
    qtbot.keyClicks(window.editor, text)


def complete(qtbot, window: MainWindow) -> None:
    """Ctrl+Enter, then wait for the stream to end."""
    window.last_stats = None
    qtbot.keyClick(window.editor, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: window.last_stats is not None and not window.streaming, timeout=30000)


def test_complete_accept_and_reject(qtbot, make_window):
    window = make_window()
    window.panel.set_settings(GREEDY)
    type_text(qtbot, window, PROMPT)
    assert window.complete_action.shortcut().toString() == "Ctrl+Return"

    complete(qtbot, window)
    completion = window.tracker.text
    assert window.tracker.pending and completion
    assert window.editor.toPlainText() == PROMPT + completion
    # Styled apart from the writer's text until accepted.
    styled = window.editor.extraSelections()
    assert styled and all(s.format.foreground().color() == PENDING_COLOUR for s in styled)
    assert len(styled) == 1 and len(window.tracker.spans) > 1  # one selection for the whole run of same-looking spans
    expected = window.model.generate(PROMPT, do_sample=False, max_new_tokens=12, repetition_penalty=1.2, no_repeat_ngram_size=3).text
    assert completion == expected  # the same path as the API

    qtbot.keyClick(window.editor, Qt.Key.Key_Tab)
    assert not window.tracker.pending
    assert window.editor.toPlainText() == PROMPT + completion
    assert all(s.format.foreground().color() != PENDING_COLOUR for s in window.editor.extraSelections())
    assert window.editor.textCursor().position() == len(PROMPT + completion)

    # Undo takes the whole accepted completion away in one step; redo brings it back.
    window.undo_action.trigger()
    assert window.editor.toPlainText() == PROMPT
    window.redo_action.trigger()
    assert window.editor.toPlainText() == PROMPT + completion

    # A rejected completion leaves the text exactly as it was, with nothing to redo.
    before = window.editor.toPlainText()
    complete(qtbot, window)
    assert window.editor.toPlainText() != before
    qtbot.keyClick(window.editor, Qt.Key.Key_Escape)
    assert window.editor.toPlainText() == before
    assert not window.tracker.pending and not window.editor.document().isRedoAvailable()

    # Typing over a pending completion rejects it first: the keystroke lands in the writer's text.
    complete(qtbot, window)
    qtbot.keyClicks(window.editor, "!")
    assert window.editor.toPlainText() == before + "!"


def test_stop_cancels_and_undo_restores(qtbot, make_window):
    window = make_window()
    window.panel.set_settings(dataclasses.replace(GREEDY, max_new_tokens=200, repetition_penalty=1.0, no_repeat_ngram_size=0))
    type_text(qtbot, window, PROMPT)
    window.last_stats = None
    window.complete_action.trigger()
    qtbot.waitUntil(lambda: len(window.tracker.spans) >= 2, timeout=30000)
    qtbot.keyClick(window.editor, Qt.Key.Key_Escape)  # Esc stops
    qtbot.waitUntil(lambda: not window.streaming, timeout=5000)
    assert window.last_stats.finish_reason == "cancelled"
    assert window.last_stats.new_tokens < 200
    # Measured from the Stop request to the worker's finish (tests/bench_desktop.py gives
    # the real figure; here only that it is a matter of steps, not the whole generation).
    assert window.last_cancel_latency is not None and window.last_cancel_latency < 1.0
    assert window.tracker.pending  # what streamed stays pending
    qtbot.keyClick(window.editor, Qt.Key.Key_Escape)  # a second Esc rejects
    assert window.editor.toPlainText() == PROMPT
    # The writer's own typing is still one undo away, untouched.
    window.undo_action.trigger()
    assert window.editor.toPlainText() == ""


def test_regenerate_replaces_the_last_completion(qtbot, make_window):
    window = make_window()
    window.panel.set_settings(dataclasses.replace(PRESETS["Balanced sampling"], max_new_tokens=10, seed=3))
    type_text(qtbot, window, PROMPT)
    complete(qtbot, window)
    first = window.tracker.text
    qtbot.keyClick(window.editor, Qt.Key.Key_Tab)
    window.last_stats = None
    qtbot.keyClick(window.editor, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: window.last_stats is not None and not window.streaming, timeout=30000)
    second = window.tracker.text
    assert second != first  # the next seed
    assert window.editor.toPlainText() == PROMPT + second


def test_regenerate_runs_only_what_changed(qtbot, make_window):
    """The window's slot keeps the document's keys and values: Regenerate runs one token of the
    prompt instead of all of them, and greedy search gives the same text again."""
    window = make_window()
    window.panel.set_settings(dataclasses.replace(GREEDY, max_new_tokens=8))
    window.editor.setPlainText("A fortune cookie says: " * 20)
    window.editor.moveCursor(QTextCursor.MoveOperation.End)
    prompt_tokens = len(window.model.tokenizer.encode(window.editor.toPlainText()))
    complete(qtbot, window)
    first, first_stats = window.tracker.text, window.last_stats
    assert first and first_stats.reused_tokens == 0  # a fresh slot
    window.last_stats = None
    qtbot.keyClick(window.editor, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: window.last_stats is not None and not window.streaming, timeout=30000)
    assert window.tracker.text == first
    assert window.last_stats.reused_tokens == prompt_tokens - 1  # all but the last, whose logits are needed
    print(f"first token: {1e3 * first_stats.first_token_s:.1f} ms, regenerated {1e3 * window.last_stats.first_token_s:.1f} ms")


def test_inspector_shows_alternatives_and_branches(qtbot, make_window):
    window = make_window()
    window.panel.set_settings(GREEDY)
    type_text(qtbot, window, PROMPT)
    complete(qtbot, window)
    spans = window.tracker.spans
    assert len(spans) >= 3
    # Hovering over a generated token shows it.
    wide = next(i for i, span in enumerate(spans) if span.end - span.start >= 3)  # e.g. " Larry"
    hover = window.editor.textCursor()
    hover.setPosition(spans[wide].start + 1)
    viewport = window.editor.viewport()
    point = QPointF(window.editor.cursorRect(hover).center())
    move = QMouseEvent(QEvent.Type.MouseMove, point, viewport.mapToGlobal(point), Qt.MouseButton.NoButton, Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(viewport, move)  # QTest.mouseMove moves no pointer on the offscreen platform
    assert window.inspector.token is spans[wide].tokens[-1]
    # So does selecting one: the third.
    cursor = window.editor.textCursor()
    cursor.setPosition(spans[2].start)
    cursor.setPosition(spans[2].end, cursor.MoveMode.KeepAnchor)
    window.editor.setTextCursor(cursor)
    token, alternatives = window.inspector.token, window.inspector.alternatives
    assert token is spans[2].tokens[-1]
    table = window.inspector.table
    assert table.rowCount() == 5
    probabilities = [alt[2] for alt in alternatives]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1 + 1e-6
    assert alternatives[0][0] == token.token_id  # greedy picked the most likely token
    assert window.inspector.heading.text().endswith(percent(probability(token)))

    # Click the second alternative: it replaces the token and generation goes on from it.
    kept = window.editor.toPlainText()[: spans[2].start]
    alt_id, alt_text, _ = alternatives[1]
    window.last_stats = None
    rect = table.visualItemRect(table.item(1, 1))
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.waitUntil(lambda: window.last_stats is not None and not window.streaming, timeout=30000)
    text = window.editor.toPlainText()
    assert text.startswith(kept + alt_text)
    assert window.tracker.spans[2].tokens[0].token_id == alt_id
    assert window.tracker.pending
    assert window.focusWidget() is window.editor  # issue 28, defect 10: focus back in the text, so Tab accepts
    # The branched completion is still one step: rejecting it leaves the prompt.
    qtbot.keyClick(window.editor, Qt.Key.Key_Escape)
    assert window.editor.toPlainText() == PROMPT

    # The probability colours toggle.
    complete(qtbot, window)
    window.colour_action.setChecked(True)
    backgrounds = {s.format.background().color().name() for s in window.editor.extraSelections()}
    assert len(backgrounds) >= 2


def test_beam_search_completions_have_the_inspector_too(qtbot, make_window):
    """The Beam search preset: the best beam arrives when the search ends, token by token
    with its probabilities, and equals the runtime's own beam search."""
    window = make_window()
    beams = dataclasses.replace(PRESETS["Beam search"], max_new_tokens=12)
    window.panel.set_settings(beams)
    type_text(qtbot, window, PROMPT)
    complete(qtbot, window)
    want = window.model.generate(PROMPT, **beams.generation_kwargs())
    spans = window.tracker.spans
    assert window.tracker.text == want.text and len(spans) >= 3
    tokens = [token for span in spans for token in span.tokens]
    assert [token.token_id for token in tokens] == want.token_ids
    cursor = window.editor.textCursor()
    cursor.setPosition(spans[1].start)
    cursor.setPosition(spans[1].end, cursor.MoveMode.KeepAnchor)
    window.editor.setTextCursor(cursor)
    assert window.inspector.token is spans[1].tokens[-1] and window.inspector.table.rowCount() == 5
    assert 0 < probability(window.inspector.token) <= 1


def test_spans_cover_their_text_even_past_emoji(qtbot):
    """Qt counts positions in UTF-16 units: an emoji is two, so spans are measured that way."""
    document = QTextDocument()
    tracker = CompletionTracker(document)
    tracker.begin(0)
    tracker.extend([("I \u2764\ufe0f \U0001f600", []), (" ok", [])])
    tracker.append("\U0001f389!", [])
    assert [document_text(document, span.start, span.end) for span in tracker.spans] == ["I \u2764\ufe0f \U0001f600", " ok", "\U0001f389!"]
    assert tracker.text == document.toPlainText() == "I \u2764\ufe0f \U0001f600 ok\U0001f389!"


def test_settings_round_trip(qtbot, make_window, tmp_path):
    store = QSettings(str(tmp_path / "round-trip.ini"), QSettings.Format.IniFormat)
    window = make_window(settings=store)
    chosen = dataclasses.replace(PRESETS["Creative"], seed=7, max_new_tokens=33, stop_strings="\n\n|THE END")
    window.panel.set_settings(chosen)
    assert window.panel.preset.currentText() == "Creative"
    window.colour_action.setChecked(True)
    window.resize(700, 500)
    window.close()

    reopened = make_window(settings=QSettings(str(tmp_path / "round-trip.ini"), QSettings.Format.IniFormat))
    assert reopened.panel.settings() == chosen
    assert reopened.panel.preset.currentText() == "Creative"
    assert reopened.colour_action.isChecked()
    assert (reopened.width(), reopened.height()) == (700, 500)
    assert reopened.provider == "cpu"


def test_a_bad_model_folder_is_a_message_and_the_app_goes_on(qtbot, make_window, tmp_path):
    (tmp_path / "not-a-model").mkdir()
    window = make_window(model_folder=str(tmp_path / "not-a-model"), wait=False)
    qtbot.waitUntil(lambda: window.messages.isVisible(), timeout=30000)
    assert "Could not load the model" in window.messages.label.text()
    assert "manifest.json" in window.messages.label.text()
    assert window.model is None and not window.complete_action.isEnabled()

    window.load_model(None, "cpu")  # Model > Use the Shipped Model
    qtbot.waitUntil(lambda: window.model is not None, timeout=30000)
    assert window.status.provider_label.text() == "CPU"
    window.panel.set_settings(GREEDY)
    type_text(qtbot, window, PROMPT)
    complete(qtbot, window)
    assert window.tracker.text

    # Bad settings are a message too, not a crash. (The panel's ranges allow none today, so the
    # settings are put in place of the panel's; stop strings with beams became valid.)
    window.panel.settings = lambda: dataclasses.replace(GREEDY, do_sample=True, top_p=0.0)
    qtbot.keyClick(window.editor, Qt.Key.Key_Tab)
    window.complete_action.trigger()
    assert "Can't complete" in window.messages.label.text()
    assert not window.streaming and not window.tracker.pending


def test_cuda_request_is_never_silent(qtbot, make_window):
    window = make_window()
    window.set_provider("cuda")
    qtbot.waitUntil(lambda: not window.status.busy.isVisible(), timeout=30000)
    if window.model.provider == "cuda":
        assert window.status.provider_label.text() == "CUDA"
    else:  # no usable GPU here: a message says why, and the CPU model keeps working
        assert "CUDA" in window.messages.label.text() and window.messages.isVisible()
        assert window.status.provider_label.text() == "CPU"


def test_a_provider_that_failed_is_not_kept(qtbot, make_window, tmp_path):
    # Issue 28, defect 1: the menu stayed on CUDA after the CUDA load failed, and the next start had no model.
    window = make_window()
    window.set_provider("cuda")
    qtbot.waitUntil(lambda: not window.status.busy.isVisible(), timeout=30000)
    running = "cuda" if window.model.provider == "cuda" else "cpu"  # no usable GPU here: the CPU model goes on
    assert window.provider == running and window.provider_actions[running].isChecked()
    assert [name for name, action in window.provider_actions.items() if action.isChecked()] == [running]
    window.save_settings()
    assert window.store.value("model/provider") == running


def test_a_model_folder_that_failed_is_not_saved_and_a_stale_saved_one_falls_back(qtbot, make_window, tmp_path):
    # Issue 28, defect 2: `--model /nonexistent` then quit, and a plain start had no model.
    store = QSettings(str(tmp_path / "fallback.ini"), QSettings.Format.IniFormat)
    window = make_window(model_folder=str(tmp_path / "nonexistent"), settings=store, wait=False)
    qtbot.waitUntil(lambda: window.messages.isVisible(), timeout=30000)
    assert window.model is None and window.model_folder is None  # asked for on the command line: no fallback
    window.save_settings()
    assert store.value("model/folder") == ""
    again = make_window(provider=None, settings=store)  # a plain start: the shipped model
    assert again.model_folder is None and again.model is not None

    store.setValue("model/folder", str(tmp_path / "deleted-since"))  # saved by an earlier session, gone now
    stale = make_window(provider=None, settings=store)
    assert stale.model_folder is None and stale.provider == "auto"
    assert "using the shipped model instead" in stale.messages.label.text()


def test_files_save_open_and_the_close_prompt(qtbot, make_window, tmp_path, dialogs):
    asked, answers = dialogs
    window = make_window()
    window.panel.set_settings(GREEDY)
    type_text(qtbot, window, PROMPT)
    complete(qtbot, window)  # pending: not the writer's text, so not saved
    suggestion = window.tracker.text
    path = tmp_path / "story.txt"
    assert window.files.save_as(str(path))
    assert path.read_text(encoding="utf-8") == PROMPT
    assert window.windowTitle().startswith("story.txt")
    # Issue 28, defect 7: saving threw the pending suggestion away. It stays, to be accepted or rejected.
    assert window.tracker.pending and window.tracker.text == suggestion and suggestion in window.editor.toPlainText()
    assert not window.files.modified

    type_text(qtbot, window, " more")
    answers["warning"] = QMessageBox.StandardButton.Cancel
    window.close()
    assert window.isVisible() and asked[-1][1] == "Unsaved text"  # cancelled: nothing lost
    answers["warning"] = QMessageBox.StandardButton.Save
    window.close()
    assert not window.isVisible()
    assert path.read_text(encoding="utf-8") == PROMPT + " more"

    other = make_window()
    other.files.open_file(str(path))
    assert other.editor.toPlainText() == PROMPT + " more"
    assert not other.editor.document().isModified()
    # Issue 28, defect 12: the cursor was at the start, so Ctrl+Enter completed from an empty prompt.
    assert other.editor.textCursor().position() == len(PROMPT + " more")


def test_autosave_recovers_text_after_a_crash(qtbot, make_window, tmp_path, dialogs):
    asked, answers = dialogs
    window = make_window()
    type_text(qtbot, window, "Text that must never be lost")
    store = RecoveryStore(tmp_path / "recovery")
    qtbot.waitUntil(lambda: store.load() is not None, timeout=5000)  # autosaved a moment after typing
    assert store.load().text == "Text that must never be lost"
    # A crash: the window never closes, the recovery file stays.
    window.closeEvent = lambda event: event.accept()

    answers["question"] = QMessageBox.StandardButton.Yes
    restarted = make_window()
    assert restarted.files.offer_recovery()
    assert restarted.editor.toPlainText() == "Text that must never be lost"
    assert restarted.editor.document().isModified()
    assert asked[-1][1] == "Recover unsaved text?"
    # A clean exit (the text saved or deliberately discarded) leaves nothing to recover.
    answers["warning"] = QMessageBox.StandardButton.Discard
    restarted.close()
    assert store.load() is None


def test_a_text_longer_than_the_context_drops_its_left_end(qtbot, make_window):
    window = make_window()
    window.panel.set_settings(dataclasses.replace(GREEDY, max_new_tokens=5))
    text = "A long day at the office. " * 60
    window.editor.setPlainText(text)
    window.editor.moveCursor(window.editor.textCursor().MoveOperation.End)
    complete(qtbot, window)
    n = window.model.info.n_positions
    ids = window.model.encode_prompt(text)
    dropped = len(ids) - (n - 5)
    assert dropped > 0
    assert window.status.context_label.text() == f"context: {n}/{n} tokens ({dropped} dropped from the left)"
    # It completes the right end of the text, as the step API does on those ids.
    search = window.model.generator(do_sample=False, max_new_tokens=5, repetition_penalty=1.2, no_repeat_ngram_size=3)
    search.append_tokens(ids[dropped:])
    while not search.is_done():
        search.generate_next_token()
    assert window.tracker.text == window.model.tokenizer.decode(search.generated_ids(0))


def test_entry_points():
    from conftest import run_cli

    result = run_cli("desktop", "--help")
    assert result.returncode == 0 and "--model DIR" in result.stdout and "--provider" in result.stdout
    result = run_cli("desktop", "--provider", "tpu")
    assert result.returncode == 2 and "invalid choice: 'tpu'" in result.stderr
    launcher = os.path.join(os.path.dirname(sys.executable), "gpt2onnx-desktop")
    assert os.access(launcher, os.X_OK)


def test_closing_mid_generation_stops_the_worker(qtbot, make_window):
    window = make_window()
    window.panel.set_settings(dataclasses.replace(GREEDY, max_new_tokens=200, repetition_penalty=1.0, no_repeat_ngram_size=0))
    type_text(qtbot, window, PROMPT)
    window.complete_action.trigger()
    qtbot.waitUntil(lambda: len(window.tracker.spans) >= 1, timeout=30000)
    threads = window.controller.jobs.threads()
    window.close()
    assert not window.isVisible()
    assert threads and all(thread.isFinished() for thread in threads)
    assert window.editor.toPlainText() == PROMPT  # the unaccepted completion went, the writer's text stayed


def test_accepting_mid_stream_ends_the_worker_thread_at_once(qtbot, make_window):
    """Tab while streaming stops the worker and waits for its thread on the UI thread. The
    thread must end without the UI's event loop: a quit queued to the UI thread could not
    run while it waits, and the wait would time out with the thread still running."""
    window = make_window()
    window.panel.set_settings(dataclasses.replace(GREEDY, max_new_tokens=200, repetition_penalty=1.0, no_repeat_ngram_size=0))
    type_text(qtbot, window, PROMPT)
    window.complete_action.trigger()
    qtbot.waitUntil(lambda: len(window.tracker.spans) >= 1, timeout=30000)
    [thread] = window.controller.jobs.threads()
    qtbot.keyClick(window.editor, Qt.Key.Key_Tab)
    assert thread.isFinished()
    assert not window.streaming and not window.tracker.pending
    assert window.editor.toPlainText().startswith(PROMPT) and len(window.editor.toPlainText()) > len(PROMPT)


def test_worker_signals_survive_thousands_of_tokens(qtbot):
    """Streaming emits a signal per token from the worker thread; PySide6 6.12.0 corrupts a
    reference count on each such emit and crashes after a few thousand (hence the pin)."""
    from PySide6.QtCore import QObject, Signal, Slot

    from gpt2onnx.desktop.worker import Job, start_job

    class Emitter(Job):
        token = Signal(str, object)
        finished = Signal(object)

        @Slot()
        def run(self):
            for i in range(20000):
                self.token.emit("x", [i])
            self.finished.emit(None)

    class Receiver(QObject):  # lives on this (the UI) thread, as the window does
        def __init__(self):
            super().__init__()
            self.received = []

        def on_token(self, text, payload):
            self.received.append(payload[0])

    receiver = Receiver()
    job = Emitter()
    job.token.connect(receiver.on_token)
    thread = start_job(job, [job.finished])
    qtbot.waitUntil(lambda: len(receiver.received) == 20000, timeout=60000)
    assert thread.wait(5000)  # the job's own thread quits it: no UI event loop needed
    assert receiver.received == list(range(20000))


def test_a_gpt1_model_completes_like_the_api(qtbot, make_window, gpt1):
    """GPT-1 (lowercasing BPE, no bos/eos) in the app: the completion is the API's."""
    window = make_window(model_folder=str(gpt1.onnx_dir))
    window.panel.set_settings(GREEDY)
    type_text(qtbot, window, "The quick brown fox")
    complete(qtbot, window)
    expected = window.model.generate("The quick brown fox", do_sample=False, max_new_tokens=12, repetition_penalty=1.2, no_repeat_ngram_size=3).text
    assert window.tracker.text == expected and expected
    assert window.editor.toPlainText() == "The quick brown fox" + expected


def test_the_inspector_branches_from_the_keyboard(qtbot):
    # Issue 28, defect 11: the arrows selected a row, but Enter did not branch.
    from gpt2onnx.desktop.inspector import TokenInspector
    from gpt2onnx.runtime.results import TokenLogprobs

    inspector = TokenInspector()
    qtbot.addWidget(inspector)
    token = TokenLogprobs(11, math.log(0.5), [(11, math.log(0.5)), (22, math.log(0.3)), (33, math.log(0.1))])
    inspector.show_token(token, lambda t: f"tok{t}")
    chosen = []
    inspector.alternative_chosen.connect(lambda token_id, text: chosen.append((token_id, text)))
    inspector.table.setFocus()
    inspector.table.setCurrentCell(0, 1)
    qtbot.keyClick(inspector.table, Qt.Key.Key_Down)
    qtbot.keyClick(inspector.table, Qt.Key.Key_Down)
    assert inspector.table.currentRow() == 2 and chosen == []  # the arrows only choose
    qtbot.keyClick(inspector.table, Qt.Key.Key_Return)
    assert chosen == [(33, "tok33")]
