"""Per-row constraint state: a logits processor that keeps state for each row, the hook a
grammar matcher plugs into (llguidance's LLMatcher has the same four calls).

A Constraint belongs to one row (one sequence or beam). Before each choice it masks the
row's scores (banned tokens at -inf); after it, it accepts the token chosen; it can take
tokens back (rollback, when a row rewinds drafted tokens) and be copied (when beam search
continues one beam in several). RowConstraints holds one per row of a search and makes
their state follow the search's rows: beam reorders copy the surviving beams' state, a
row that stops stops accepting, and a cancelled search simply drops it. Slot moves in the
engine need nothing: the state belongs to the search's rows, not to cache rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np


class Constraint(Protocol):
    def mask(self, scores: np.ndarray) -> np.ndarray:
        """The row's scores [vocab] with the tokens it may not take now at -inf (a new array or in place)."""

    def accept(self, token: int) -> None:
        """The row took `token`."""

    def rollback(self, n: int) -> None:
        """Forget the last n tokens accepted."""

    def copy(self) -> Constraint:
        """An independent copy of this state."""


ConstraintFactory = Callable[[], Constraint]  # a fresh state for one row


class RowConstraints:
    """One Constraint per row of a search."""

    def __init__(self, factory: ConstraintFactory, rows: int):
        self.rows = [factory() for _ in range(rows)]

    def apply(self, scores: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Scores [rows, vocab] masked by each row's state (only `rows`, a bool mask [rows], when given)."""
        out = scores.copy()  # [rows, vocab]: the caller's logits may be the cache's buffer
        for r, constraint in enumerate(self.rows):
            if rows is None or rows[r]:
                out[r] = constraint.mask(out[r])
        return out

    def accept(self, tokens: np.ndarray, rows: np.ndarray | None = None) -> None:
        """Row r took tokens[r] (only `rows`, a bool mask, when given: finished rows take padding)."""
        for r, token in enumerate(tokens.tolist()):
            if rows is None or rows[r]:
                self.rows[r].accept(token)

    def reorder(self, source: np.ndarray) -> None:
        """Row i continues row source[i] (beam search): a row continued twice gets a copy."""
        taken: set[int] = set()
        out = []
        for s in source.tolist():
            out.append(self.rows[s].copy() if s in taken else self.rows[s])
            taken.add(s)
        self.rows = out

    def rollback(self, row: int, n: int) -> None:
        self.rows[row].rollback(n)
