"""The main window: editor, decoding panel, token inspector, menus and status bar.

It owns the state machine of a completion (idle -> streaming -> pending ->
accepted or rejected), starts background jobs (model loading, generation) and
reacts to their signals; it never runs the model itself. Settings are read
from QSettings at start and written on close; the text is autosaved for crash
recovery.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths, Qt, QThread, QTimer
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QColor, QKeySequence, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTextEdit,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from gpt2onnx.runtime import Engine, Gpt2OnnxError, Model
from gpt2onnx.runtime.providers import PROVIDERS

from .completion import CompletionTracker, document_text
from .controls import DecodingPanel
from .editor import Editor
from .inspector import TokenInspector, probability_colour
from .recovery import RecoveryStore
from .settings import DecodingSettings, load_decoding, save_decoding
from .worker import TOP_ALTERNATIVES, GenerationStats, GenerationWorker, ModelLoader, TokenInfo, start_job

APP_NAME = "gpt2onnx"
AUTOSAVE_MS = 1000  # write the recovery file this long after the last edit
PENDING_COLOUR = QColor("#6a6a8a")  # text of a completion not yet accepted
RESTYLE_MS = 100  # while streaming, restyle the completion at most this often


class MessageBar(QWidget):
    """A one-line message above the editor: errors and notes appear here, never as a crash."""

    def __init__(self):
        super().__init__()
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        close = QPushButton("Dismiss")
        close.clicked.connect(self.hide)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.addWidget(self.label, 1)
        layout.addWidget(close)
        self.setAutoFillBackground(True)
        self.hide()

    def show_message(self, text: str, level: str = "error") -> None:
        colour = {"error": "#f8d7da", "warning": "#fff3cd", "info": "#d1ecf1"}[level]
        self.setStyleSheet(f"MessageBar {{ background: {colour}; }}")
        self.label.setText(text)
        self.level = level
        self.show()


class MainWindow(QMainWindow):
    """The text-completion app's window."""

    def __init__(
        self,
        settings: QSettings | None = None,
        recovery_dir: str | Path | None = None,
        model_folder: str | None = None,
        provider: str | None = None,
    ):
        super().__init__()
        self.store = settings if settings is not None else QSettings(APP_NAME, "desktop")
        folder = recovery_dir or QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
        self.recovery = RecoveryStore(folder)
        self.model: Model | None = None
        self.engine: Engine | None = None  # the model's slot engine (one slot, kept between completions)
        self.model_folder: str | None = model_folder if model_folder is not None else (self.store.value("model/folder", "") or None)
        self.provider = provider or str(self.store.value("model/provider", "auto"))
        if self.provider not in PROVIDERS:
            self.provider = "auto"
        self.path: str | None = None  # the file being edited
        self._worker: GenerationWorker | None = None
        self._thread: QThread | None = None
        self._jobs: list[tuple[QThread, object]] = []  # running background jobs, kept alive
        self._started = 0.0  # perf_counter() when the current generation began
        self._streamed = 0  # tokens streamed in the current generation
        self._regenerations = 0
        self.cancel_requested_at: float | None = None
        self.last_cancel_latency: float | None = None  # seconds from Stop to the worker's finish
        self.last_stats: GenerationStats | None = None
        self._inspected: int | None = None  # span index shown in the inspector

        self.editor = Editor()
        self.editor.has_pending = lambda: self.tracker.pending
        self.tracker = CompletionTracker(self.editor.document())
        self.messages = MessageBar()
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.messages)
        layout.addWidget(self.editor)
        self.setCentralWidget(central)

        self.panel = DecodingPanel(load_decoding(self.store))
        self.inspector = TokenInspector()
        self._add_dock("Decoding", self.panel, Qt.DockWidgetArea.LeftDockWidgetArea)
        self._add_dock("Token inspector", self.inspector, Qt.DockWidgetArea.RightDockWidgetArea)
        self._make_actions()
        self._make_status_bar()

        self.editor.accept_requested.connect(self.accept_completion)
        self.editor.escape_requested.connect(self._escape)
        self.editor.edit_over_pending.connect(self.reject_completion)
        self.editor.hovered.connect(self._hovered)
        self.editor.cursorPositionChanged.connect(self._cursor_moved)
        self.editor.document().modificationChanged.connect(self.setWindowModified)
        self.editor.textChanged.connect(self._schedule_autosave)
        self.tracker.changed.connect(self._tracker_changed)
        # Restyling rebuilds a selection per token: while streaming, at most every RESTYLE_MS.
        self.restyle_timer = QTimer(self, singleShot=True, interval=RESTYLE_MS)
        self.restyle_timer.timeout.connect(self._restyle)
        self.inspector.alternative_chosen.connect(self.branch)
        self.autosave_timer = QTimer(self, singleShot=True, interval=AUTOSAVE_MS)
        self.autosave_timer.timeout.connect(self.autosave)

        self._restore_window()
        self._update_title()
        self._update_actions()
        self.load_model(self.model_folder, self.provider)

    # ----- layout -----
    def _add_dock(self, title: str, widget: QWidget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(title.replace(" ", "_"))
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _action(self, text: str, slot, shortcut=None, menu=None, tip: str | None = None) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setStatusTip(tip)
        action.triggered.connect(slot)
        if menu is not None:
            menu.addAction(action)
        return action

    def _make_actions(self) -> None:
        bar = self.menuBar()
        file = bar.addMenu("&File")
        self._action("&New", self.new_file, QKeySequence.StandardKey.New, file)
        self._action("&Open…", self.open_file, QKeySequence.StandardKey.Open, file)
        self._action("&Save", self.save, QKeySequence.StandardKey.Save, file)
        self._action("Save &As…", self.save_as, QKeySequence.StandardKey.SaveAs, file)
        file.addSeparator()
        self._action("&Quit", self.close, QKeySequence.StandardKey.Quit, file)

        edit = bar.addMenu("&Edit")
        self.undo_action = self._action("&Undo", self.undo, QKeySequence.StandardKey.Undo, edit)
        self.redo_action = self._action("&Redo", self.editor.redo, QKeySequence.StandardKey.Redo, edit)
        edit.addSeparator()
        self.complete_action = self._action("&Complete", self.complete, "Ctrl+Return", edit, "complete the text at the cursor")
        self.complete_action.setShortcuts([QKeySequence("Ctrl+Return"), QKeySequence("Ctrl+Enter")])
        # Tab, Enter and Esc act only while a completion is pending: the editor handles
        # them, and the menu shows them after a tab.
        self.accept_action = self._action("&Accept Completion\tTab / Enter", self.accept_completion, None, edit)
        self.reject_action = self._action("Re&ject Completion\tEsc", self.reject_completion, None, edit)
        self.stop_action = self._action("&Stop\tEsc", self.stop, None, edit, "stop generating")
        self.regenerate_action = self._action("&Regenerate", self.regenerate, "Ctrl+R", edit, "replace the last completion")

        view = bar.addMenu("&View")
        self.colour_action = QAction("&Colour Tokens by Probability", self, checkable=True)
        self.colour_action.setChecked(str(self.store.value("view/colour_by_probability", "false")).lower() == "true")
        self.colour_action.toggled.connect(self._restyle)
        view.addAction(self.colour_action)
        for dock in self.findChildren(QDockWidget):
            view.addAction(dock.toggleViewAction())

        model = bar.addMenu("&Model")
        self._action("Open Model &Folder…", self.choose_model_folder, None, model)
        self._action("Use the &Shipped Model", lambda: self.load_model(None, self.provider), None, model)
        model.addSeparator()
        group = QActionGroup(self)
        self.provider_actions = {}
        for name in PROVIDERS:
            action = QAction(f"Provider: {name.upper() if name != 'auto' else 'auto'}", self, checkable=True)
            action.setChecked(name == self.provider)
            action.triggered.connect(lambda _=False, n=name: self.set_provider(n))
            group.addAction(action)
            model.addAction(action)
            self.provider_actions[name] = action

        for action, short in ((self.accept_action, "Accept"), (self.reject_action, "Reject"), (self.stop_action, "Stop")):
            action.setIconText(short)  # the toolbar's label, without the menu's key hint
        tools = QToolBar("Completion")
        tools.setObjectName("completion_toolbar")
        for action in (self.complete_action, self.stop_action, self.accept_action, self.reject_action, self.regenerate_action):
            tools.addAction(action)
        self.addToolBar(tools)

    def _make_status_bar(self) -> None:
        bar = self.statusBar()
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)  # an indeterminate busy indicator
        self.busy.setMaximumWidth(120)
        self.busy.hide()
        self.model_label = QLabel("no model")
        self.provider_label = QLabel("")
        self.speed_label = QLabel("")
        self.context_label = QLabel("")
        bar.addWidget(self.busy)
        for label in (self.model_label, self.provider_label, self.speed_label, self.context_label):
            bar.addPermanentWidget(label)

    # ----- model -----
    def choose_model_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open an export folder made by 'gpt2onnx export'")
        if folder:
            self.load_model(folder, self.provider)

    def set_provider(self, provider: str) -> None:
        self.provider = provider
        self.provider_actions[provider].setChecked(True)
        self.load_model(self.model_folder, provider)

    def load_model(self, folder: str | None, provider: str) -> None:
        """Load in the background; the window stays usable and shows a busy indicator."""
        self.busy.show()
        self.model_label.setText(f"loading {self._model_name(folder)}…")
        loader = ModelLoader(folder, provider)
        loader.loaded.connect(self._model_loaded)
        loader.error.connect(self._model_failed)
        self._track(start_job(loader, [loader.loaded]), loader)

    @staticmethod
    def _model_name(folder: str | None) -> str:
        return "the shipped model" if folder is None else Path(folder).name

    def _model_loaded(self, model: Model, folder: str | None) -> None:
        self.busy.hide()
        if self._worker is not None:
            self.stop(wait=True)
        self.model, self.model_folder = model, folder
        # One slot that keeps the last prompt's keys and values: Regenerate and completing again
        # at the same place run only what changed (prefix reuse).
        self.engine = model.engine(slots=1)
        self.model_label.setText(f"model: {self._model_name(folder)}")
        self.model_label.setToolTip(str(model.folder))
        running = model.provider.upper()
        if model.provider_note:
            self.provider_label.setText(f"{running} (fallback)")
            self.provider_label.setToolTip(model.provider_note)
            self.messages.show_message(f"{model.provider_note}", "warning")
        else:
            self.provider_label.setText(running)
            self.provider_label.setToolTip(f"running on {running}")
        self._update_context()
        self._update_actions()

    def _model_failed(self, message: str) -> None:
        self.busy.hide()
        kept = f" (still using {self._model_name(self.model_folder)})" if self.model is not None else ""
        self.model_label.setText(f"model: {self._model_name(self.model_folder)}" if self.model else "no model")
        self.messages.show_message(f"Could not load the model: {message}{kept}", "error")
        self._update_actions()

    # ----- completion -----
    @property
    def streaming(self) -> bool:
        return self._worker is not None

    def complete(self) -> None:
        """Start a completion at the cursor (Ctrl+Enter)."""
        if self.model is None or self.streaming:
            if self.model is None:
                self.messages.show_message("No model is loaded yet: wait for it, or choose one in the Model menu.", "info")
            return
        if self.tracker.pending:
            self.accept_completion()
        cursor = self.editor.textCursor()
        position = max(cursor.position(), cursor.anchor())
        self.tracker.begin(position)
        self._generate()

    def _generate(self, seed_offset: int = 0) -> None:
        """Stream a completion into the tracker at its end (a new one, or a continuation)."""
        settings = self.panel.settings()
        try:
            kwargs = settings.generation_kwargs()
            config = self.model.config(**kwargs, logprobs=TOP_ALTERNATIVES)
        except Gpt2OnnxError as e:
            self.tracker.reject()
            self.messages.show_message(f"Can't complete: {e}", "error")
            return
        seed = settings.seed + seed_offset if settings.seed >= 0 else secrets.randbelow(2**31)
        # The prompt is the text before the completion; when it is longer than the context
        # leaves room for, the worker drops its left end (the status bar says how much).
        room = max(1, self.model.info.n_positions - settings.max_new_tokens)
        self._started, self._streamed = time.perf_counter(), 0
        self.cancel_requested_at = None
        worker = GenerationWorker(self.model, document_text(self.editor.document(), 0, self.tracker.end), room, config, seed, self.engine)
        worker.context.connect(self._on_context)
        worker.token.connect(self._on_token)
        worker.beam.connect(self._on_beam)
        worker.finished.connect(self._on_finished)
        worker.error.connect(self._on_error)
        self._worker = worker
        self._thread = start_job(worker, [worker.finished])
        self._track(self._thread, worker)
        self.speed_label.setText("generating…")
        self._update_actions()

    def _on_context(self, used: int, dropped: int) -> None:
        if self.sender() is self._worker:
            self._update_context(used, dropped)

    def _on_token(self, text: str, tokens: list[TokenInfo]) -> None:
        if self.sender() is not self._worker:
            return  # a stopped worker's last delta
        self.tracker.append(text, tokens)
        self._streamed += max(1, len(tokens))
        elapsed = time.perf_counter() - self._started
        if elapsed > 0:
            self.speed_label.setText(f"{self._streamed / elapsed:.1f} tok/s")

    def _on_beam(self, pieces: list[tuple[str, list[TokenInfo]]]) -> None:
        if self.sender() is self._worker:
            self.tracker.extend(pieces)

    def _on_finished(self, stats: GenerationStats) -> None:
        if self.sender() is not self._worker:
            return
        self._finish_worker()
        self._restyle()
        self.last_stats = stats
        if self.cancel_requested_at is not None:
            self.last_cancel_latency = time.perf_counter() - self.cancel_requested_at
        self.speed_label.setText(f"{stats.tokens_per_second:.1f} tok/s, first token {1e3 * stats.first_token_s:.0f} ms")
        self.speed_label.setToolTip(f"{stats.reused_tokens} prompt tokens reused from the last completion" if stats.reused_tokens else "")
        if not self.tracker.spans:
            self.tracker.reject()
            note = "the model ended the text right away" if stats.finish_reason == "eos" else f"nothing was generated ({stats.finish_reason})"
            self.statusBar().showMessage(note, 4000)
        else:
            self.statusBar().showMessage(f"{stats.new_tokens} tokens ({stats.finish_reason}): Tab or Enter accepts, Esc rejects", 6000)
        self._update_actions()

    def _on_error(self, message: str) -> None:
        if self.sender() is not self._worker:
            return
        self._finish_worker()
        self.tracker.reject()
        self.messages.show_message(f"Generation failed: {message}", "error")
        self._update_actions()

    def _finish_worker(self) -> None:
        self._worker = None
        self._thread = None
        self.restyle_timer.stop()

    def _track(self, thread: QThread, job) -> None:
        """Keep a job and its thread alive until the thread ends."""
        self._jobs.append((thread, job))
        thread.finished.connect(self._reap_jobs)

    def _reap_jobs(self) -> None:
        self._jobs = [(t, j) for t, j in self._jobs if not t.isFinished()]

    def stop(self, wait: bool = False) -> None:
        """Cancel generation after the current token (Esc or the Stop button)."""
        worker, thread = self._worker, self._thread
        if worker is None:
            return
        self.cancel_requested_at = time.perf_counter()
        worker.cancel()
        if wait and thread is not None:
            thread.wait(5000)
            self._finish_worker()
            self._update_actions()

    def _escape(self) -> None:
        """Esc: stop generating; pressed again (or when done), reject the completion."""
        if self.streaming:
            self.stop()
        elif self.tracker.pending:
            self.reject_completion()

    def accept_completion(self) -> None:
        if self.streaming:
            self.stop(wait=True)
        if not self.tracker.pending:
            return
        self.tracker.accept()
        cursor = self.editor.textCursor()
        cursor.setPosition(self.tracker.end)
        self.editor.setTextCursor(cursor)
        self._regenerations = 0
        self._update_actions()
        self.autosave()

    def reject_completion(self) -> None:
        if self.streaming:
            self.stop(wait=True)
        if self.tracker.pending:
            self.tracker.reject()
        self._update_actions()

    def undo(self) -> None:
        """Undo: a pending completion is rejected; otherwise the editor's undo (a whole
        accepted completion is one step)."""
        if self.tracker.pending:
            self.reject_completion()
        else:
            self.editor.undo()

    def regenerate(self) -> None:
        """Replace the last completion (pending, or accepted and not edited since) with a new one."""
        if self.model is None:
            return
        if self.streaming:
            self.stop(wait=True)
        start = self.tracker.start
        if self.tracker.pending:
            self.tracker.reject()
        elif self.tracker.spans:
            self.tracker.truncate(0)  # an accepted completion: removing it is one undo step
        else:
            self.complete()
            return
        self._regenerations += 1
        self.tracker.begin(start)
        self._generate(seed_offset=self._regenerations)

    def branch(self, token_id: int, text: str) -> None:
        """Replace the inspected token with an alternative and generate on from it."""
        index = self._inspected
        if index is None or index >= len(self.tracker.spans) or self.model is None:
            return
        if self.streaming:
            self.stop(wait=True)
        was_pending = self.tracker.pending
        end = self.tracker.truncate(index)
        if not was_pending:
            self.tracker.begin(end)
        chosen = TokenInfo(token_id, text, self._alternative_probability(token_id))
        self.tracker.append(text, [chosen])
        self._inspected = len(self.tracker.spans) - 1
        self.inspector.show_token(chosen)
        self._generate()

    def _alternative_probability(self, token_id: int) -> float:
        token = self.inspector.token
        for tid, _, p in token.alternatives if token else ():
            if tid == token_id:
                return p
        return 0.0

    # ----- inspector and styling -----
    def _hovered(self, position: int) -> None:
        index = self.tracker.span_at(position) if position >= 0 else None
        if index is not None:
            self._inspect(index)

    def _cursor_moved(self) -> None:
        cursor = self.editor.textCursor()
        position = cursor.selectionStart() if cursor.hasSelection() else cursor.position() - 1
        index = self.tracker.span_at(position)
        if index is not None:
            self._inspect(index)

    def _inspect(self, index: int) -> None:
        span = self.tracker.spans[index]
        if not span.tokens:
            return
        self._inspected = index
        self.inspector.show_token(span.tokens[-1])

    def _tracker_changed(self) -> None:
        if self.streaming:
            if not self.restyle_timer.isActive():
                self.restyle_timer.start()
        else:
            self._restyle()

    def _restyle(self) -> None:
        """Pending text in its own colour; with the toggle, each token's background by probability."""
        # Neighbouring spans that look the same share one selection: a 300-token completion
        # without probability colours is one selection, not 300 for the editor to paint.
        runs: list[list] = []  # [start, end, background colour or None]
        colour = self.colour_action.isChecked()
        for span in self.tracker.spans:
            background = probability_colour(min(t.probability for t in span.tokens)) if colour and span.tokens else None
            if runs and runs[-1][1] == span.start and runs[-1][2] == background:
                runs[-1][1] = span.end
            else:
                runs.append([span.start, span.end, background])
        selections = []
        for start, end, background in runs:
            selection = QTextEdit.ExtraSelection()
            cursor = QTextCursor(self.editor.document())
            cursor.setPosition(start)
            cursor.setPosition(end, QTextCursor.MoveMode.KeepAnchor)
            selection.cursor = cursor
            fmt = QTextCharFormat()
            if self.tracker.pending:
                fmt.setForeground(PENDING_COLOUR)
                fmt.setFontItalic(True)
            if background is not None:
                fmt.setBackground(background)
            selection.format = fmt
            selections.append(selection)
        self.editor.setExtraSelections(selections)
        if self._inspected is not None and self._inspected >= len(self.tracker.spans):
            self._inspected = None
            self.inspector.show_token(None)
        self._update_actions()

    def _update_actions(self) -> None:
        pending = self.tracker.pending
        # While a completion is pending the writer can select and copy but not edit: a key
        # that would edit rejects it first (Editor), and a paste or drop can't slip inside it.
        if self.editor.isReadOnly() != pending:
            self.editor.setReadOnly(pending)
            if pending:
                self.editor.setTextInteractionFlags(
                    Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.TextSelectableByKeyboard
                )
        self.complete_action.setEnabled(self.model is not None and not self.streaming)
        self.stop_action.setEnabled(self.streaming)
        self.accept_action.setEnabled(pending)
        self.reject_action.setEnabled(pending)
        self.regenerate_action.setEnabled(self.model is not None and (pending or bool(self.tracker.spans)))

    def _update_context(self, used: int | None = None, dropped: int = 0) -> None:
        if self.model is None:
            return
        n = self.model.info.n_positions
        if used is None:
            self.context_label.setText(f"context: {n} tokens")
            return
        total = min(n, used + self.panel.settings().max_new_tokens)
        text = f"context: {total}/{n} tokens"
        if dropped:
            text += f" ({dropped} dropped from the left)"
        self.context_label.setText(text)

    # ----- files -----
    def _document_text(self) -> str:
        """The writer's text: a pending completion is not part of it."""
        text = self.editor.toPlainText()
        if self.tracker.pending:
            text = text[: self.tracker.start] + text[self.tracker.end :]
        return text

    def _update_title(self) -> None:
        name = Path(self.path).name if self.path else "Untitled"
        self.setWindowTitle(f"{name}[*] \u2014 gpt2onnx")

    def maybe_save(self) -> bool:
        """Ask before losing unsaved text; False means the writer cancelled."""
        if not self.editor.document().isModified():
            return True
        answer = QMessageBox.warning(
            self,
            "Unsaved text",
            "The document has unsaved changes. Save them?",
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel,
        )
        if answer == QMessageBox.StandardButton.Save:
            return self.save()
        return answer == QMessageBox.StandardButton.Discard

    def new_file(self) -> None:
        self.reject_completion()
        if self.maybe_save():
            self.editor.setPlainText("")
            self.path = None
            self.editor.document().setModified(False)
            self.recovery.clear()
            self._update_title()

    def open_file(self, path: str | None = None) -> None:
        self.reject_completion()
        if not self.maybe_save():
            return
        if not path:
            path, _ = QFileDialog.getOpenFileName(self, "Open", "", "Text files (*.txt *.md);;All files (*)")
            if not path:
                return
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            self.messages.show_message(f"Could not open {path}: {e}", "error")
            return
        self.editor.setPlainText(text)
        self.path = path
        self.editor.document().setModified(False)
        self._update_title()

    def save(self) -> bool:
        if not self.path:
            return self.save_as()
        return self._write(self.path)

    def save_as(self, path: str | None = None) -> bool:
        if not path:
            path, _ = QFileDialog.getSaveFileName(self, "Save As", self.path or "untitled.txt", "Text files (*.txt);;All files (*)")
            if not path:
                return False
        if self._write(path):
            self.path = path
            self._update_title()
            return True
        return False

    def _write(self, path: str) -> bool:
        """Write atomically: a crash mid-write leaves the old file whole."""
        self.reject_completion()
        target = Path(path)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(self._document_text(), encoding="utf-8")
            os.replace(tmp, target)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            self.messages.show_message(f"Could not save {path}: {e}", "error")
            return False
        self.editor.document().setModified(False)
        self.statusBar().showMessage(f"saved {path}", 3000)
        return True

    # ----- recovery -----
    def _schedule_autosave(self) -> None:
        self.autosave_timer.start()

    def autosave(self) -> None:
        """Write the recovery file now (only when there is something unsaved)."""
        self.autosave_timer.stop()
        if self.editor.document().isModified():
            try:
                self.recovery.save(self._document_text(), self.path)
            except OSError as e:
                self.statusBar().showMessage(f"autosave failed: {e}", 5000)
        else:
            self.recovery.clear()

    def offer_recovery(self) -> bool:
        """If the last session left unsaved text, offer it back; True when it was restored."""
        recovered = self.recovery.load()
        if recovered is None or not recovered.text:
            return False
        answer = QMessageBox.question(
            self,
            "Recover unsaved text?",
            f"gpt2onnx closed without saving {len(recovered.text)} characters"
            + (f" of {recovered.path}" if recovered.path else "")
            + ". Recover them?",
        )
        if answer != QMessageBox.StandardButton.Yes:
            self.recovery.clear()
            return False
        self.editor.setPlainText(recovered.text)
        self.path = recovered.path
        self.editor.document().setModified(True)
        self._update_title()
        return True

    # ----- settings and closing -----
    def _restore_window(self) -> None:
        geometry = self.store.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1100, 700)
        state = self.store.value("window/state")
        if state is not None:
            self.restoreState(state)

    def save_settings(self) -> None:
        self.store.setValue("window/geometry", self.saveGeometry())
        self.store.setValue("window/state", self.saveState())
        self.store.setValue("model/folder", self.model_folder or "")
        self.store.setValue("model/provider", self.provider)
        self.store.setValue("view/colour_by_probability", self.colour_action.isChecked())
        save_decoding(self.store, self.panel.settings())
        self.store.sync()

    def shutdown(self) -> None:
        """Stop every background job and wait for its thread to end.

        No timeout: a cancelled generation ends within a step and a load within its own
        time, while a QThread destroyed still running aborts the whole process."""
        if self._worker is not None:
            self._worker.cancel()
        for thread, _ in list(self._jobs):
            thread.quit()
            thread.wait()

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.streaming:
            self.stop(wait=True)
        if self.tracker.pending:
            self.tracker.reject()
        if not self.maybe_save():
            event.ignore()
            return
        self.shutdown()
        self.save_settings()
        self.recovery.clear()  # a clean exit: nothing to recover
        event.accept()
