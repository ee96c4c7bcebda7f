"""The completion in the document: where its text is, which tokens made it, and
whether the writer has accepted it yet.

A completion's text goes into the document as it streams, inside one joined
edit block, so Undo removes a whole completion in one step and Reject is that
undo with the redo entry dropped: the writer's own text is never changed by a
completion they did not accept. Its styling (pending, probability colours) is
drawn with extra selections (styling.py), never stored in the document.
Each span keeps the runtime's own TokenLogprobs records; their text is spelled
only where it is shown (the token inspector).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QTextCursor, QTextDocument

if TYPE_CHECKING:  # only named here: the document model needs neither onnxruntime nor threads
    from gpt2onnx.runtime import TokenLogprobs


def document_text(document: QTextDocument, start: int, end: int) -> str:
    """document[start:end] as plain text (Qt marks line breaks in a selection as U+2029)."""
    cursor = QTextCursor(document)
    cursor.setPosition(start)
    cursor.setPosition(end, QTextCursor.MoveMode.KeepAnchor)
    return cursor.selectedText().replace("\u2029", "\n")


def qt_length(text: str) -> int:
    """The length of `text` in document positions: Qt counts UTF-16 code units, so an emoji is 2."""
    return len(text.encode("utf-16-le")) // 2


@dataclass
class Span:
    """Text in the document made by one streamed delta, and the tokens behind it."""

    start: int  # document position of its first character
    end: int  # one past its last character
    tokens: list[TokenLogprobs]  # usually one; several when a character spans tokens


class CompletionTracker(QObject):
    """Tracks the latest completion in a QTextDocument."""

    changed = Signal()  # spans or state changed: restyle

    def __init__(self, document: QTextDocument):
        super().__init__()
        self.document = document
        self.spans: list[Span] = []
        self.pending = False  # streamed in (or streaming) and not yet accepted or rejected
        self.start = self.end = 0  # the completion's text is document[start:end]
        self._inserted = False  # whether this completion has an edit block on the undo stack
        self._editing = False  # our own edit in progress: contentsChange is not the writer's
        document.contentsChange.connect(self._on_contents_change)

    # The completion's life: begin -> append* -> accept | reject.
    def begin(self, position: int) -> None:
        """A new completion at `position` (the last one's spans are forgotten)."""
        self.spans, self.pending, self._inserted = [], True, False
        self.start = self.end = position
        self.changed.emit()

    def append(self, text: str, tokens: list[TokenLogprobs]) -> None:
        """Insert streamed text at the completion's end, joined to its undo step."""
        self.extend([(text, tokens)])

    def extend(self, pieces: list[tuple[str, list[TokenLogprobs]]]) -> None:
        """Insert several streamed deltas, a span each, in one edit (a finished beam
        arrives whole: one edit instead of hundreds keeps the UI thread free)."""
        text = "".join(piece for piece, _ in pieces)
        if text:
            self._edit(lambda cursor: cursor.insertText(text), self.end)
        for piece, tokens in pieces:
            if piece:
                end = self.end + qt_length(piece)
                self.spans.append(Span(self.end, end, list(tokens)))
                self.end = end
            elif tokens and self.spans:  # tokens that added no text of their own
                self.spans[-1].tokens.extend(tokens)
        if text:
            self.changed.emit()

    def accept(self) -> None:
        """Keep the text: it becomes the writer's, one undo step; spans stay for the inspector."""
        self.pending = False
        self.changed.emit()

    def reject(self) -> None:
        """Remove the completion's text and leave no redo entry behind."""
        if self._inserted:
            self._editing = True
            try:
                self.document.undo()
                self.document.clearUndoRedoStacks(QTextDocument.Stacks.RedoStack)
            finally:
                self._editing = False
        self.spans, self.pending, self._inserted = [], False, False
        self.end = self.start
        self.changed.emit()

    def truncate(self, span_index: int) -> int:
        """Remove the completion's text from span `span_index` on (pending: inside its undo
        step); returns the position where it now ends."""
        cut = self.spans[span_index].start
        if self.end > cut:
            self._edit(lambda cursor: self._remove(cursor, cut, self.end), cut)
        del self.spans[span_index:]
        self.end = cut
        self.changed.emit()
        return cut

    def span_at(self, position: int) -> int | None:
        """Index of the span holding the character at `position`, if any."""
        for i, span in enumerate(self.spans):
            if span.start <= position < span.end:
                return i
        return None

    @property
    def text(self) -> str:
        return document_text(self.document, self.start, self.end)

    def writer_text(self) -> str:
        """The document without a pending completion: the writer's own text."""
        text = self.document.toPlainText()
        if self.pending:
            text = text[: self.start] + text[self.end :]
        return text

    # Internals.
    @staticmethod
    def _remove(cursor: QTextCursor, start: int, end: int) -> None:
        cursor.setPosition(start)
        cursor.setPosition(end, QTextCursor.MoveMode.KeepAnchor)
        cursor.removeSelectedText()

    def _edit(self, change, position: int) -> None:
        """Apply `change` at `position`: the first edit of a pending completion opens its
        undo step, later ones join it; an accepted completion's edit is a step of its own."""
        cursor = QTextCursor(self.document)
        cursor.setPosition(position)
        self._editing = True
        try:
            if self.pending and self._inserted:
                cursor.joinPreviousEditBlock()
            else:
                cursor.beginEditBlock()
            change(cursor)
            cursor.endEditBlock()
        finally:
            self._editing = False
        self._inserted = self._inserted or self.pending

    def _on_contents_change(self, position: int, removed: int, added: int) -> None:
        """The writer edited (or undid): move the spans after the edit, drop the ones it touched."""
        if self._editing:
            return
        delta = added - removed
        kept = []
        for span in self.spans:
            if span.end <= position:
                kept.append(span)
            elif span.start >= position + removed:
                kept.append(Span(span.start + delta, span.end + delta, span.tokens))
        if kept != self.spans:
            self.spans = kept
            if self.start >= position + removed:
                self.start += delta
                self.end += delta
            self.changed.emit()
