"""The document editor: a QPlainTextEdit that routes the completion keys and
reports which character the mouse is over (for the token inspector).

It is a view: it shows a QTextDocument made before it (the completion tracker
watches the same document) and asks `has_pending`, given at construction,
whether a completion is pending.

While a completion is pending, Tab and Enter accept it and Esc stops or
rejects it; any other edit rejects it first, so the writer's keystroke never
lands inside text they did not accept.
"""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeyEvent, QKeySequence, QMouseEvent, QTextDocument
from PySide6.QtWidgets import QPlainTextDocumentLayout, QPlainTextEdit

ACCEPT_KEYS = {Qt.Key.Key_Tab, Qt.Key.Key_Return, Qt.Key.Key_Enter}
# Keys that move or select without editing: they leave a pending completion alone.
NAVIGATION_KEYS = {
    Qt.Key.Key_Left, Qt.Key.Key_Right, Qt.Key.Key_Up, Qt.Key.Key_Down, Qt.Key.Key_Home, Qt.Key.Key_End,
    Qt.Key.Key_PageUp, Qt.Key.Key_PageDown, Qt.Key.Key_Shift, Qt.Key.Key_Control, Qt.Key.Key_Alt, Qt.Key.Key_Meta,
}


class Editor(QPlainTextEdit):
    """Emits accept/escape requests while a completion is pending, and hovered positions."""

    accept_requested = Signal()
    escape_requested = Signal()
    edit_over_pending = Signal()  # the writer started typing: reject the pending completion first
    hovered = Signal(int)  # document position under the mouse pointer, -1 when none

    def __init__(self, document: QTextDocument, has_pending: Callable[[], bool]):
        """Show `document` (see plain_document); `has_pending()` says whether a completion is pending."""
        super().__init__()
        document.setParent(self)  # as the editor's own document would be: it lives as long as the view
        self.setDocument(document)
        self.has_pending = has_pending
        self.viewport().setMouseTracking(True)  # hover events without a button held
        self.setTabChangesFocus(False)

    @staticmethod
    def plain_document() -> QTextDocument:
        """A document an Editor can show (a QPlainTextEdit needs its plain-text layout), to make
        before the editor so that the completion tracker and the editor can share it."""
        document = QTextDocument()
        document.setDocumentLayout(QPlainTextDocumentLayout(document))
        return document

    def keyPressEvent(self, event: QKeyEvent) -> None:
        plain = not (event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier)
        if self.has_pending():
            if event.key() in ACCEPT_KEYS and plain:
                self.accept_requested.emit()
                return
            if event.key() == Qt.Key.Key_Escape:
                self.escape_requested.emit()
                return
            if event.key() not in NAVIGATION_KEYS and (event.text() or event.key() in (Qt.Key.Key_Backspace, Qt.Key.Key_Delete)):
                if not event.matches(QKeySequence.StandardKey.Copy):
                    self.edit_over_pending.emit()
        elif event.key() == Qt.Key.Key_Escape:
            self.escape_requested.emit()
            return
        super().keyPressEvent(event)

    def focusNextPrevChild(self, next: bool) -> bool:
        # A read-only QPlainTextEdit gives Tab to focus changes; while a completion is
        # pending (the editor is read-only then) Tab must reach keyPressEvent to accept.
        if self.has_pending():
            return False
        return super().focusNextPrevChild(next)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        super().mouseMoveEvent(event)
        cursor = self.cursorForPosition(event.position().toPoint())
        # cursorForPosition gives the nearest gap; the character under the pointer is the
        # one after it unless the pointer is on the right half of the previous one.
        rect = self.cursorRect(cursor)
        position = cursor.position()
        if event.position().x() < rect.x() and position > 0:
            position -= 1
        self.hovered.emit(position)

    def leaveEvent(self, event) -> None:
        super().leaveEvent(event)
        self.hovered.emit(-1)
