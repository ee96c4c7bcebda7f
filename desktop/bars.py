"""The window's bars: its menus and toolbar (the actions, each wired to the window's
commands), its status bar, and the message bar above the editor.

`make_menus` builds the actions for a MainWindow and sets them on it as
attributes (`complete_action`, ...), which the window enables as its state
changes; the StatusBar shows what the window tells it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QDockWidget, QHBoxLayout, QLabel, QProgressBar, QPushButton, QStatusBar, QToolBar, QWidget

from gpt2onnx.runtime.providers import PROVIDERS

if TYPE_CHECKING:
    from gpt2onnx.runtime import Model

    from .window import MainWindow
    from .worker import GenerationStats


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


def _action(window: MainWindow, text: str, slot, shortcut=None, menu=None, tip: str | None = None) -> QAction:
    action = QAction(text, window)
    if shortcut is not None:
        action.setShortcut(QKeySequence(shortcut))
    if tip:
        action.setStatusTip(tip)
    action.triggered.connect(slot)
    if menu is not None:
        menu.addAction(action)
    return action


def make_menus(window: MainWindow) -> None:
    """The File, Edit, View and Model menus and the completion toolbar."""
    bar, files = window.menuBar(), window.files
    file = bar.addMenu("&File")
    _action(window, "&New", files.new_file, QKeySequence.StandardKey.New, file)
    _action(window, "&Open…", files.open_file, QKeySequence.StandardKey.Open, file)
    _action(window, "&Save", files.save, QKeySequence.StandardKey.Save, file)
    _action(window, "Save &As…", files.save_as, QKeySequence.StandardKey.SaveAs, file)
    file.addSeparator()
    _action(window, "&Quit", window.close, QKeySequence.StandardKey.Quit, file)

    edit = bar.addMenu("&Edit")
    window.undo_action = _action(window, "&Undo", window.undo, QKeySequence.StandardKey.Undo, edit)
    window.redo_action = _action(window, "&Redo", window.editor.redo, QKeySequence.StandardKey.Redo, edit)
    edit.addSeparator()
    window.complete_action = _action(window, "&Complete", window.complete, "Ctrl+Return", edit, "complete the text at the cursor")
    window.complete_action.setShortcuts([QKeySequence("Ctrl+Return"), QKeySequence("Ctrl+Enter")])
    # Tab, Enter and Esc act only while a completion is pending: the editor handles
    # them, and the menu shows them after a tab.
    window.accept_action = _action(window, "&Accept Completion\tTab / Enter", window.accept_completion, None, edit)
    window.reject_action = _action(window, "Re&ject Completion\tEsc", window.reject_completion, None, edit)
    window.stop_action = _action(window, "&Stop\tEsc", lambda: window.controller.stop(), None, edit, "stop generating")
    window.regenerate_action = _action(window, "&Regenerate", window.regenerate, "Ctrl+R", edit, "replace the last completion")

    view = bar.addMenu("&View")
    window.colour_action = QAction("&Colour Tokens by Probability", window, checkable=True)
    window.colour_action.setChecked(str(window.store.value("view/colour_by_probability", "false")).lower() == "true")
    view.addAction(window.colour_action)
    for dock in window.findChildren(QDockWidget):
        view.addAction(dock.toggleViewAction())

    model = bar.addMenu("&Model")
    _action(window, "Open Model &Folder…", window.choose_model_folder, None, model)
    _action(window, "Use the &Shipped Model", lambda: window.load_model(None, window.provider), None, model)
    model.addSeparator()
    group = QActionGroup(window)
    window.provider_actions = {}
    for name in PROVIDERS:
        action = QAction(f"Provider: {name.upper() if name != 'auto' else 'auto'}", window, checkable=True)
        action.setChecked(name == window.provider)
        action.triggered.connect(lambda _=False, n=name: window.set_provider(n))
        group.addAction(action)
        model.addAction(action)
        window.provider_actions[name] = action

    for action, short in ((window.accept_action, "Accept"), (window.reject_action, "Reject"), (window.stop_action, "Stop")):
        action.setIconText(short)  # the toolbar's label, without the menu's key hint
    tools = QToolBar("Completion")
    tools.setObjectName("completion_toolbar")
    for action in (window.complete_action, window.stop_action, window.accept_action, window.reject_action, window.regenerate_action):
        tools.addAction(action)
    window.addToolBar(tools)


class StatusBar(QStatusBar):
    """A busy indicator while a model loads, and labels for the model, where it runs, the
    speed of the last completion and how much of the context it used."""

    def __init__(self):
        super().__init__()
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)  # an indeterminate busy indicator
        self.busy.setMaximumWidth(120)
        self.busy.hide()
        self.model_label = QLabel("no model")
        self.provider_label = QLabel("")
        self.speed_label = QLabel("")
        self.context_label = QLabel("")
        self.addWidget(self.busy)
        for label in (self.model_label, self.provider_label, self.speed_label, self.context_label):
            self.addPermanentWidget(label)

    def loading(self, folder: str | None) -> None:
        self.busy.show()
        self.model_label.setText(f"loading {model_name(folder)}…")

    def model_loaded(self, model: Model, folder: str | None) -> None:
        self.busy.hide()
        self.model_label.setText(f"model: {model_name(folder)}")
        self.model_label.setToolTip(str(model.folder))
        running = model.provider.upper()
        if model.provider_note:
            self.provider_label.setText(f"{running} (fallback)")
            self.provider_label.setToolTip(model.provider_note)
        else:
            self.provider_label.setText(running)
            self.provider_label.setToolTip(f"running on {running}")

    def model_failed(self, model: Model | None, folder: str | None) -> None:
        """Loading failed; `model` from `folder` is still the one in use (None: none)."""
        self.busy.hide()
        self.model_label.setText(f"model: {model_name(folder)}" if model else "no model")

    def finished(self, stats: GenerationStats, kept: bool) -> None:
        """A completion ended; `kept`: whether it left any text."""
        self.speed_label.setText(f"{stats.tokens_per_second:.1f} tok/s, first token {1e3 * stats.first_token_s:.0f} ms")
        self.speed_label.setToolTip(f"{stats.reused_tokens} prompt tokens reused from the last completion" if stats.reused_tokens else "")
        if not kept:
            note = "the model ended the text right away" if stats.finish_reason == "eos" else f"nothing was generated ({stats.finish_reason})"
            self.showMessage(note, 4000)
        else:
            self.showMessage(f"{stats.new_tokens} tokens ({stats.finish_reason}): Tab or Enter accepts, Esc rejects", 6000)

    def context(self, n_positions: int, used: int | None = None, dropped: int = 0, max_new_tokens: int = 0) -> None:
        """The context's size; with `used`, how much of it a completion fills."""
        if used is None:
            self.context_label.setText(f"context: {n_positions} tokens")
            return
        text = f"context: {min(n_positions, used + max_new_tokens)}/{n_positions} tokens"
        if dropped:
            text += f" ({dropped} dropped from the left)"
        self.context_label.setText(text)


def model_name(folder: str | None) -> str:
    return "the shipped model" if folder is None else Path(folder).name
