"""The document's files: new, open, save and save as (written atomically), the
unsaved-changes prompt, autosave and crash recovery.

What is written is always the writer's own text: saving and autosave leave a
pending completion out, and it stays on screen to be accepted or rejected. The recovery file is written a
moment after each edit and cleared on a clean exit (recovery.py), so after a
crash the next start can offer the text back.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import QFileDialog, QMessageBox, QPlainTextEdit

from .completion import CompletionTracker
from .recovery import RecoveryStore

AUTOSAVE_MS = 1000  # write the recovery file this long after the last edit


class DocumentFiles(QObject):
    """Reads and writes the editor's text; asks the writer through dialogs over its window."""

    path_changed = Signal()  # the file being edited changed (the window's title shows it)
    message = Signal(str, str)  # text, level ("error", "warning", "info"): for the message bar
    status = Signal(str, int)  # a passing note and how many milliseconds to show it

    def __init__(self, editor: QPlainTextEdit, tracker: CompletionTracker, end_completion: Callable[[], None], recovery_dir: str | Path):
        """`end_completion()` stops and rejects a pending completion before the text is replaced (new, open)."""
        super().__init__(editor)
        self.editor, self.tracker, self.end_completion = editor, tracker, end_completion
        self.recovery = RecoveryStore(recovery_dir)
        self.path: str | None = None  # the file being edited
        self._saved = ""  # the writer's text as last saved or opened
        self.autosave_timer = QTimer(self, singleShot=True, interval=AUTOSAVE_MS)
        self.autosave_timer.timeout.connect(self.autosave)
        editor.textChanged.connect(self._schedule_autosave)

    @property
    def modified(self) -> bool:
        """The writer's text differs from what was last saved or opened (a pending completion is not theirs)."""
        return self.editor.document().isModified() and self.tracker.writer_text() != self._saved

    def maybe_save(self) -> bool:
        """Ask before losing unsaved text; False means the writer cancelled."""
        if not self.modified:
            return True
        answer = QMessageBox.warning(
            self.editor.window(),
            "Unsaved text",
            "The document has unsaved changes. Save them?",
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel,
        )
        if answer == QMessageBox.StandardButton.Save:
            return self.save()
        return answer == QMessageBox.StandardButton.Discard

    def new_file(self) -> None:
        self.end_completion()
        if self.maybe_save():
            self.editor.setPlainText("")
            self.path, self._saved = None, ""
            self.editor.document().setModified(False)
            self.recovery.clear()
            self.path_changed.emit()

    def open_file(self, path: str | None = None) -> None:
        """Open `path` (None: ask for one)."""
        self.end_completion()
        if not self.maybe_save():
            return
        if not path:
            path, _ = QFileDialog.getOpenFileName(self.editor.window(), "Open", "", "Text files (*.txt *.md);;All files (*)")
            if not path:
                return
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            self.message.emit(f"Could not open {path}: {e}", "error")
            return
        self.editor.setPlainText(text)
        self.editor.moveCursor(QTextCursor.MoveOperation.End)  # Ctrl+Enter continues the text, not its first line
        self.path, self._saved = path, text
        self.editor.document().setModified(False)
        self.path_changed.emit()

    def save(self) -> bool:
        if not self.path:
            return self.save_as()
        return self._write(self.path)

    def save_as(self, path: str | None = None) -> bool:
        """Save to `path` (None: ask for one); False when not saved."""
        if not path:
            path, _ = QFileDialog.getSaveFileName(self.editor.window(), "Save As", self.path or "untitled.txt", "Text files (*.txt);;All files (*)")
            if not path:
                return False
        if self._write(path):
            self.path = path
            self.path_changed.emit()
            return True
        return False

    def _write(self, path: str) -> bool:
        """Write the writer's text atomically (a crash mid-write leaves the old file whole); a pending
        completion is left out of the file and on the screen."""
        target = Path(path)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        text = self.tracker.writer_text()
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, target)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            self.message.emit(f"Could not save {path}: {e}", "error")
            return False
        self._saved = text
        self.editor.document().setModified(False)
        self.status.emit(f"saved {path}", 3000)
        return True

    # ----- recovery -----
    def _schedule_autosave(self) -> None:
        self.autosave_timer.start()

    def autosave(self) -> None:
        """Write the recovery file now (only when there is something unsaved)."""
        self.autosave_timer.stop()
        if self.modified:
            try:
                self.recovery.save(self.tracker.writer_text(), self.path)
            except OSError as e:
                self.status.emit(f"autosave failed: {e}", 5000)
        else:
            self.recovery.clear()

    def offer_recovery(self) -> bool:
        """If the last session left unsaved text, offer it back; True when it was restored."""
        recovered = self.recovery.load()
        if recovered is None or not recovered.text:
            return False
        answer = QMessageBox.question(
            self.editor.window(),
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
        self.path_changed.emit()
        return True

    def closed_cleanly(self) -> None:
        """A clean exit (the text saved or deliberately discarded): nothing to recover."""
        self.autosave_timer.stop()
        self.recovery.clear()
