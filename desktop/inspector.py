"""The token inspector: a generated token's probability and its top alternatives.

Shows the "choice 1..5" table people make by hand to study GPT-2: each row an
alternative with its probability under the model's own distribution. Clicking
a row asks the window to replace the token with it and regenerate from there.
The token is the runtime's TokenLogprobs record (ids and log-probabilities); the
inspector spells the ids with the tokenizer of the model that made them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtWidgets import QHeaderView, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from .styling import probability, probability_colour

if TYPE_CHECKING:
    from gpt2onnx.runtime import TokenLogprobs


def visible(text: str) -> str:
    """A token's text with its spaces and line breaks made visible."""
    return text.replace(" ", "\u2423").replace("\n", "\u21b5")


def percent(probability: float) -> str:
    """A probability as a percentage with the precision it needs: 42%, 3.1%, 0.27%, <0.01%."""
    if probability >= 0.1:
        return f"{probability:.0%}"
    if probability >= 0.01:
        return f"{probability:.1%}"
    if probability >= 0.0001:
        return f"{probability:.2%}"
    return "<0.01%"


class TokenInspector(QWidget):
    """Shows one token; emits `alternative_chosen(token_id, text)` when a row is clicked."""

    alternative_chosen = Signal(int, str)

    def __init__(self):
        super().__init__()
        self.heading = QLabel("Hover over or select a generated token.")
        self.heading.setWordWrap(True)
        self.heading.setTextFormat(Qt.TextFormat.PlainText)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["#", "token", "probability"])
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setToolTip("Click an alternative (or choose it with the arrows and press Enter) to use it instead and regenerate from there")
        self.table.cellClicked.connect(self._clicked)
        self.table.installEventFilter(self)  # from the keyboard: the arrows choose a row, Enter branches from it
        self.hint = QLabel("Click an alternative to branch from it.")
        self.hint.setEnabled(False)
        layout = QVBoxLayout(self)
        layout.addWidget(self.heading)
        layout.addWidget(self.table)
        layout.addWidget(self.hint)
        self.token: TokenLogprobs | None = None
        self.alternatives: list[tuple[int, str, float]] = []  # the rows: (token id, text, probability)

    def show_token(self, token: TokenLogprobs | None, token_text: Callable[[int], str] | None = None) -> None:
        """Show `token` (None: none) and its alternatives, spelled by `token_text` (the
        tokenizer's token_text of the model that made it; needed with a token)."""
        self.token = token
        if token is None:
            self.alternatives = []
            self.heading.setText("Hover over or select a generated token.")
            self.table.setRowCount(0)
            return
        self.alternatives = [(int(t), token_text(t), math.exp(logprob)) for t, logprob in token.top]
        self.heading.setText(f"\u201c{visible(token_text(token.token_id))}\u201d  {percent(probability(token))}")
        self.table.setRowCount(len(self.alternatives))
        for row, (token_id, text, p) in enumerate(self.alternatives):
            cells = [str(row + 1), visible(text), percent(p)]
            for column, value in enumerate(cells):
                item = QTableWidgetItem(value)
                item.setData(Qt.ItemDataRole.UserRole, token_id)
                item.setBackground(probability_colour(p))
                if token_id == token.token_id:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                self.table.setItem(row, column, item)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """Enter on the table branches from its current row, as a click on it does."""
        if watched is self.table and event.type() == QEvent.Type.KeyPress and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self._clicked(self.table.currentRow(), 0)
            return True
        return super().eventFilter(watched, event)

    def _clicked(self, row: int, _column: int) -> None:
        if not 0 <= row < len(self.alternatives):
            return
        token_id, text, _ = self.alternatives[row]
        self.alternative_chosen.emit(token_id, text)
