"""The KV cache of Optimum's plain graph (an export made with --graph optimum):
the graph returns past + new keys/values, so each row keeps its own arrays; a
step over rows of different lengths left-pads them into one batch (a copy per
step: this graph batches less cleverly, but gives the same tokens). Its rows
bookkeeping (prefix reuse, rewind, moves) is slots.py's; kv_cache.py holds the
GroupQueryAttention graph's cache and picks one of the two for a session.
"""

from __future__ import annotations

import numpy as np

from .session import DecoderSession
from .slots import Rows


class ConcatKVCache(Rows):
    """Each row's past keys/values [1, n_head, length, head_dim], as Optimum's graph returns them."""

    def __init__(self, session: DecoderSession, slots: int, capacity: int):
        super().__init__(slots, capacity)
        self.session = session
        self.past = [session.empty_past(1) for _ in range(slots)]  # per row: per layer (key, value)

    def prefill(self, row: int, ids: list[int], start: int = 0, last_only: bool = True) -> np.ndarray:
        """Run `ids` on row `row` after its first `start` tokens: logits [len(ids), vocab] (or [1, vocab] last_only)."""
        seq = len(ids)
        self._check_room(row, start, seq)
        past = [(k[:, :, :start], v[:, :, :start]) for k, v in self.past[row]]
        mask = np.ones((1, start + seq), np.int64)  # [1, start + seq]
        positions = np.arange(start, start + seq, dtype=np.int64)[None, :]  # [1, seq]
        logits, self.past[row] = self.session.forward(np.array([ids], np.int64), mask, positions, past)
        self._after_prefill(row, ids, start)
        return (logits[0, -1:] if last_only else logits[0]).astype(np.float32)

    def decode(self, rows: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """One token per row: tokens [n] on rows [n]; logits [n, vocab]."""
        for row in rows.tolist():
            self._check_room(row, int(self.lengths[row]), 1)
        lengths = self.lengths[rows]  # [n]
        width = int(lengths.max())
        if len(rows) == 1:
            past = self.past[int(rows[0])]
        else:  # left-pad every row's past to the longest: padded slots get mask 0
            past = []
            for layer in range(self.session.info.n_layer):
                shape = (len(rows), self.session.info.n_head, width, self.session.info.head_dim)
                keys, values = np.zeros(shape, self.session.dtype), np.zeros(shape, self.session.dtype)  # [n, n_head, width, head_dim]
                for i, row in enumerate(rows.tolist()):
                    k, v = self.past[row][layer]
                    keys[i, :, width - k.shape[2] :], values[i, :, width - v.shape[2] :] = k[0], v[0]
                past.append((keys, values))
        mask = np.concatenate([np.arange(width)[None, :] >= (width - lengths)[:, None], np.ones((len(rows), 1), bool)], axis=1)
        logits, present = self.session.forward(tokens.astype(np.int64)[:, None], mask.astype(np.int64), lengths[:, None], past)
        for i, row in enumerate(rows.tolist()):
            pad = width - int(lengths[i])
            self.past[row] = [(k[i : i + 1, :, pad:], v[i : i + 1, :, pad:]) for k, v in present]  # views
        self._after_decode(rows, tokens)
        return logits[:, -1].astype(np.float32)

    def ride(self, rows: np.ndarray, tokens: np.ndarray) -> bool:
        """Optimum's graph runs no chunk beside the decode rows: they run on their own (decode)."""
        return False

    def unride(self) -> None:
        return None

    def _after_rewind(self, row: int) -> None:
        length = int(self.lengths[row])
        self.past[row] = [(k[:, :, :length], v[:, :, :length]) for k, v in self.past[row]]

    def reorder(self, dst: np.ndarray, src: np.ndarray) -> None:
        """Rows dst[i] hold what rows src[i] held (beam search follows its surviving beams)."""
        past = [self.past[s] for s in src.tolist()]
        for d, p in zip(dst.tolist(), past):
            self.past[d] = p
        self._move_rows(dst, src)
