"""How a completion looks: pending text in its own colour and, when asked, each
token's background by its probability.

Styling is drawn as the editor's extra selections, never stored in the
document, so accepting, rejecting or undoing a completion can't leave formats
behind. Nothing here holds state: `completion_selections` is recomputed from the
tracker whenever it changes.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from PySide6.QtGui import QColor, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QTextEdit

if TYPE_CHECKING:
    from gpt2onnx.runtime import TokenLogprobs

    from .completion import CompletionTracker

PENDING_COLOUR = QColor("#6a6a8a")  # text of a completion not yet accepted


def probability(token: TokenLogprobs) -> float:
    """A token's probability under the model's own distribution (before warpers)."""
    return math.exp(token.logprob)


def probability_colour(probability: float) -> QColor:
    """Red for unlikely tokens through yellow to green for likely ones, light enough to read on.

    In 11 steps of 10%: the eye can't tell finer ones apart, and neighbouring tokens of
    the same step share one selection in the editor (fewer to paint while streaming)."""
    hue = 12 * round(10 * max(0.0, min(1.0, probability)))  # 0 red .. 120 green
    return QColor.fromHsv(hue, 90, 255)


def completion_selections(tracker: CompletionTracker, colour_by_probability: bool) -> list[QTextEdit.ExtraSelection]:
    """The extra selections that style the tracker's completion."""
    # Neighbouring spans that look the same share one selection: a 300-token completion
    # without probability colours is one selection, not 300 for the editor to paint.
    runs: list[list] = []  # [start, end, background colour or None]
    for span in tracker.spans:
        background = None
        if colour_by_probability and span.tokens:
            background = probability_colour(min(probability(t) for t in span.tokens))
        if runs and runs[-1][1] == span.start and runs[-1][2] == background:
            runs[-1][1] = span.end
        else:
            runs.append([span.start, span.end, background])
    selections = []
    for start, end, background in runs:
        selection = QTextEdit.ExtraSelection()
        cursor = QTextCursor(tracker.document)
        cursor.setPosition(start)
        cursor.setPosition(end, QTextCursor.MoveMode.KeepAnchor)
        selection.cursor = cursor
        fmt = QTextCharFormat()
        if tracker.pending:
            fmt.setForeground(PENDING_COLOUR)
            fmt.setFontItalic(True)
        if background is not None:
            fmt.setBackground(background)
        selection.format = fmt
        selections.append(selection)
    return selections
