"""The main window: it builds the widgets (editor, decoding panel, token
inspector, menus, status bar) and wires them to the parts that do the work:

- controller.py: the model's engine, the generation worker and the completion's
  state machine (idle -> streaming -> pending -> accepted or rejected);
- documents.py: opening and saving files, autosave and crash recovery;
- styling.py: how the completion looks in the editor.

Besides, it loads models in the background (worker.ModelLoader) and keeps its
own settings (geometry, model, provider, decoding, colours) in QSettings.
"""

from __future__ import annotations

import math
from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths, Qt, QTimer
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import QDockWidget, QFileDialog, QMainWindow, QVBoxLayout, QWidget

from gpt2onnx.runtime import Model, TokenLogprobs
from gpt2onnx.runtime.providers import PROVIDERS

from .bars import MessageBar, StatusBar, make_menus, model_name
from .completion import CompletionTracker
from .controller import CompletionController
from .controls import DecodingPanel
from .documents import DocumentFiles
from .editor import Editor
from .inspector import TokenInspector
from .settings import load_decoding, save_decoding
from .styling import completion_selections
from .worker import Jobs, ModelLoader

APP_NAME = "gpt2onnx"
RESTYLE_MS = 100  # while streaming, restyle the completion at most this often


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
        requested_folder = model_folder if model_folder is not None else (self.store.value("model/folder", "") or None)
        self.model_folder: str | None = None  # the loaded model's folder (None: the shipped one, or nothing loaded yet)
        self.provider = provider or str(self.store.value("model/provider", "auto"))  # the one asked for; the loaded model's once it loads
        if self.provider not in PROVIDERS:
            self.provider = "auto"
        self._loaded_provider: str | None = None  # the provider setting the loaded model was loaded with
        # What was saved from an earlier session (a folder since deleted, CUDA on a machine without a GPU now)
        # falls back to the shipped model on auto, once, if it no longer loads; what the command line asked for does not.
        self._fallback = model_folder is None and provider is None
        self._fell_back: str | None = None  # the message of that fallback, until the shipped model has loaded
        self.loaders = Jobs()  # model loads running in the background
        self._inspected: int | None = None  # span index shown in the inspector

        # The document comes first: the completion tracker watches it, the editor shows it.
        document = Editor.plain_document()
        self.tracker = tracker = CompletionTracker(document)
        self.controller = CompletionController(tracker)
        self.editor = Editor(document, has_pending=lambda: tracker.pending)
        folder = recovery_dir or QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
        self.files = DocumentFiles(self.editor, tracker, self.reject_completion, folder)
        self.messages = MessageBar()
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.messages)
        layout.addWidget(self.editor)
        self.setCentralWidget(central)

        self.panel = DecodingPanel(load_decoding(self.store))
        self.inspector = TokenInspector()
        for title, widget, area in (
            ("Decoding", self.panel, Qt.DockWidgetArea.LeftDockWidgetArea),
            ("Token inspector", self.inspector, Qt.DockWidgetArea.RightDockWidgetArea),
        ):
            dock = QDockWidget(title, self)
            dock.setObjectName(title.replace(" ", "_"))
            dock.setWidget(widget)
            self.addDockWidget(area, dock)
        make_menus(self)
        self.status = StatusBar()
        self.setStatusBar(self.status)
        # Restyling rebuilds a selection per token: while streaming, at most every RESTYLE_MS.
        self.restyle_timer = QTimer(self, singleShot=True, interval=RESTYLE_MS)
        self._wire()

        self._restore_window()
        self._update_title()
        self._update_actions()
        self.load_model(requested_folder, self.provider)

    def _wire(self) -> None:
        self.editor.accept_requested.connect(self.accept_completion)
        self.editor.escape_requested.connect(self._escape)
        self.editor.edit_over_pending.connect(self.reject_completion)
        self.editor.hovered.connect(self._inspect_at)
        self.editor.cursorPositionChanged.connect(self._cursor_moved)
        self.editor.document().modificationChanged.connect(self.setWindowModified)
        self.tracker.changed.connect(self._tracker_changed)
        self.restyle_timer.timeout.connect(self._restyle)
        self.colour_action.toggled.connect(self._restyle)
        self.inspector.alternative_chosen.connect(self.branch)
        self.files.path_changed.connect(self._update_title)
        self.files.message.connect(self.messages.show_message)
        self.files.status.connect(self.status.showMessage)
        controller = self.controller
        controller.started.connect(lambda: self.status.speed_label.setText("generating…"))
        controller.progress.connect(lambda rate: self.status.speed_label.setText(f"{rate:.1f} tok/s"))
        controller.context.connect(self._update_context)
        controller.finished.connect(self.status.finished)
        controller.failed.connect(self.messages.show_message)
        controller.state_changed.connect(self._state_changed)

    # The window's own view of the controller, for tests, benchmarks and the screenshot script.
    model = property(lambda self: self.controller.model)
    streaming = property(lambda self: self.controller.streaming)
    last_cancel_latency = property(lambda self: self.controller.last_cancel_latency)
    last_stats = property(lambda self: self.controller.last_stats, lambda self, stats: setattr(self.controller, "last_stats", stats))

    # ----- model -----
    def choose_model_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open an export folder made by 'gpt2onnx export'")
        if folder:
            self.load_model(folder, self.provider)

    def set_provider(self, provider: str) -> None:
        """Reload the model on `provider`; the choice sticks (menu, saved setting) only if that load works."""
        self.provider_actions[provider].setChecked(True)
        self.load_model(self.model_folder, provider)

    def load_model(self, folder: str | None, provider: str) -> None:
        """Load in the background; the window stays usable and shows a busy indicator."""
        self.status.loading(folder)
        loader = ModelLoader(folder, provider)
        loader.loaded.connect(self._model_loaded)
        loader.error.connect(self._model_failed)
        self.loaders.start(loader, [loader.loaded])

    def _model_loaded(self, model: Model, folder: str | None) -> None:
        self.controller.set_model(model)
        self.model_folder = folder
        self._fallback = False
        self.provider = self._loaded_provider = getattr(self.sender(), "provider", self.provider)
        self.provider_actions[self.provider].setChecked(True)
        self.status.model_loaded(model, folder)
        fell_back, self._fell_back = self._fell_back, None  # why the saved model was not the one loaded
        if fell_back or model.provider_note:
            self.messages.show_message("; ".join(m for m in (fell_back, model.provider_note) if m), "warning")
        self._update_context()
        self._update_actions()

    def _model_failed(self, message: str) -> None:
        self.status.model_failed(self.model, self.model_folder)
        if self._loaded_provider is not None:  # the menu goes back to the provider the working model runs on
            self.provider = self._loaded_provider
            self.provider_actions[self.provider].setChecked(True)
        kept = f" (still using {model_name(self.model_folder)})" if self.model is not None else ""
        if self.model is None and self._fallback:
            self._fallback = False
            kept = ": using the shipped model instead"
            self._fell_back = f"Could not load the saved model: {message}{kept}"  # shown again once it has loaded
            self.provider = "auto"
            self.load_model(None, "auto")
        self.messages.show_message(f"Could not load the model: {message}{kept}", "error")
        self._update_actions()

    # ----- completion: the writer's commands, carried out by the controller -----
    def complete(self) -> None:
        """Start a completion at the cursor (Ctrl+Enter)."""
        if self.model is None:
            self.messages.show_message("No model is loaded yet: wait for it, or choose one in the Model menu.", "info")
            return
        if self.streaming:
            return
        if self.tracker.pending:
            self.accept_completion()
        cursor = self.editor.textCursor()
        self.controller.complete(max(cursor.position(), cursor.anchor()), self.panel.settings())

    def accept_completion(self) -> None:
        if self.controller.accept():
            cursor = self.editor.textCursor()
            cursor.setPosition(self.tracker.end)
            self.editor.setTextCursor(cursor)
            self.files.autosave()

    def reject_completion(self) -> None:
        self.controller.reject()

    def undo(self) -> None:
        """Undo: a pending completion is rejected; otherwise the editor's undo (a whole
        accepted completion is one step)."""
        if self.tracker.pending:
            self.reject_completion()
        else:
            self.editor.undo()

    def regenerate(self) -> None:
        """Replace the last completion with a new one; with none, complete at the cursor."""
        if self.model is not None and not self.controller.regenerate(self.panel.settings()):
            self.complete()

    def branch(self, token_id: int, text: str) -> None:
        """Replace the inspected token with an alternative and generate on from it."""
        index, shown = self._inspected, self.inspector.token
        if index is None:
            return
        logprob = next((lp for tid, lp in (shown.top if shown else ()) if tid == token_id), -math.inf)
        if self.controller.branch(index, text, TokenLogprobs(token_id, logprob), self.panel.settings()) and self.tracker.spans:
            self._inspect(len(self.tracker.spans) - 1)  # the chosen token
        self.editor.setFocus()  # back to the text: Tab accepts, typing goes on (the click left it in the inspector)

    def _escape(self) -> None:
        """Esc: stop generating; pressed again (or when done), reject the completion."""
        if self.streaming:
            self.controller.stop()
        elif self.tracker.pending:
            self.reject_completion()

    # ----- inspector and styling -----
    def _cursor_moved(self) -> None:
        cursor = self.editor.textCursor()
        self._inspect_at(cursor.selectionStart() if cursor.hasSelection() else cursor.position() - 1)

    def _inspect_at(self, position: int) -> None:
        """Show the token at a document position (hovered or selected), if it is a generated one."""
        index = self.tracker.span_at(position)  # None for -1 (nothing hovered)
        if index is not None:
            self._inspect(index)

    def _inspect(self, index: int) -> None:
        span = self.tracker.spans[index]
        if not span.tokens:
            return
        self._inspected = index
        self.inspector.show_token(span.tokens[-1], self.controller.token_text)

    def _tracker_changed(self) -> None:
        if self.streaming:
            if not self.restyle_timer.isActive():
                self.restyle_timer.start()
        else:
            self._restyle()

    def _state_changed(self) -> None:
        if not self.streaming and self.restyle_timer.isActive():
            self.restyle_timer.stop()  # the stream is over: style what it left now
            self._restyle()
        self._update_actions()

    def _restyle(self) -> None:
        self.editor.setExtraSelections(completion_selections(self.tracker, self.colour_action.isChecked()))
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
        if self.model is not None:
            self.status.context(self.model.info.n_positions, used, dropped, self.panel.settings().max_new_tokens)

    # ----- files (self.files), settings and closing -----
    def _update_title(self) -> None:
        name = Path(self.files.path).name if self.files.path else "Untitled"
        self.setWindowTitle(f"{name}[*] \u2014 gpt2onnx")

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
        """Stop every background job and wait for its thread to end (see the controller's)."""
        self.controller.shutdown()
        self.loaders.wait_all()

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.streaming:
            self.controller.stop(wait=True)
        if self.tracker.pending:
            self.tracker.reject()
        if not self.files.maybe_save():
            event.ignore()
            return
        self.shutdown()
        self.save_settings()
        self.files.closed_cleanly()
        event.accept()
