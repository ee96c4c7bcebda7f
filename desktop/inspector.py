"""The token inspector: a generated token's probability and its top alternatives.

Shows the "choice 1..5" table people make by hand to study GPT-2: each row an
alternative with its probability under the model's own distribution. Clicking
a row asks the window to replace the token with it and regenerate from there.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QHeaderView, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from .worker import TokenInfo


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


def probability_colour(probability: float) -> QColor:
    """Red for unlikely tokens through yellow to green for likely ones, light enough to read on.

    In 11 steps of 10%: the eye can't tell finer ones apart, and neighbouring tokens of
    the same step share one selection in the editor (fewer to paint while streaming)."""
    hue = 12 * round(10 * max(0.0, min(1.0, probability)))  # 0 red .. 120 green
    return QColor.fromHsv(hue, 90, 255)


class TokenInspector(QWidget):
    """Shows one TokenInfo; emits `alternative_chosen(token_id, text)` when a row is clicked."""

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
        self.table.setToolTip("Click an alternative to use it instead and regenerate from there")
        self.table.cellClicked.connect(self._clicked)
        self.hint = QLabel("Click an alternative to branch from it.")
        self.hint.setEnabled(False)
        layout = QVBoxLayout(self)
        layout.addWidget(self.heading)
        layout.addWidget(self.table)
        layout.addWidget(self.hint)
        self.token: TokenInfo | None = None

    def show_token(self, token: TokenInfo | None) -> None:
        self.token = token
        if token is None:
            self.heading.setText("Hover over or select a generated token.")
            self.table.setRowCount(0)
            return
        self.heading.setText(f"\u201c{visible(token.text)}\u201d  {percent(token.probability)}")
        self.table.setRowCount(len(token.alternatives))
        for row, (token_id, text, probability) in enumerate(token.alternatives):
            cells = [str(row + 1), visible(text), percent(probability)]
            for column, value in enumerate(cells):
                item = QTableWidgetItem(value)
                item.setData(Qt.ItemDataRole.UserRole, token_id)
                item.setBackground(probability_colour(probability))
                if token_id == token.token_id:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                self.table.setItem(row, column, item)

    def _clicked(self, row: int, _column: int) -> None:
        if self.token is None or row >= len(self.token.alternatives):
            return
        token_id, text, _ = self.token.alternatives[row]
        self.alternative_chosen.emit(token_id, text)
