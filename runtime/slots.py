"""The rows of a KV cache as slots: which rows are lent out (kept first, so one
step over the busy rows is one contiguous batch), how many tokens each holds,
and the token ids its keys and values came from, for prefix reuse. The two
cache layouts (kv_cache.py) build on this and add the memory.
"""

from __future__ import annotations

import numpy as np


def common_length(a: list[int], b: list[int]) -> int:
    """How many leading ids two sequences share."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    return int(np.argmin(np.asarray(a[:n]) == np.asarray(b[:n])))


class Slot:
    """A row lent out by the cache. Its `row` changes when the cache moves rows to keep
    the busy ones first; -1 once it is given back."""

    __slots__ = ("row",)

    def __init__(self, row: int):
        self.row = row


class Rows:
    """What both layouts keep per row (its length and the ids it holds), and lending rows out:
    busy rows are always rows 0 .. busy - 1, so one step over them runs one contiguous batch."""

    def __init__(self, slots: int, capacity: int):
        self.slots, self.capacity = slots, capacity
        self.lengths = np.zeros(slots, np.int64)  # [slots]: tokens each row holds
        self.held: list[list[int]] = [[] for _ in range(slots)]  # per row: the ids its keys/values came from
        self.busy = 0  # rows lent out
        self.moves = 0  # counts row moves (swaps): a Slot's row may have changed since the count a caller saw
        self._owners: list[Slot | None] = [None] * slots  # per row: the Slot lent for it

    @property
    def free_slots(self) -> int:
        return self.slots - self.busy

    def alloc(self, ids: list[int] | None = None) -> Slot:
        """Lend a free row: the one that holds the longest prefix of `ids`, or (ids None, a row about
        to be overwritten by a copy) the one that holds least. It is moved to the end of the busy rows."""
        if self.busy == self.slots:
            raise RuntimeError("alloc with no free KV cache slot: the caller checks free_slots first")
        free = range(self.busy, self.slots)
        if ids is None:
            row = min(free, key=lambda r: len(self.held[r]))
        else:  # longest shared prefix; among equals, the row that holds least (keep the others' prefixes)
            row = max(free, key=lambda r: (common_length(self.held[r], ids), -len(self.held[r])))
        self.swap(row, self.busy)
        slot = self._owners[self.busy] = Slot(self.busy)
        self.busy += 1
        return slot

    def release(self, slot: Slot) -> None:
        """Take a row back: it keeps its keys/values (and `held`) for a later prompt that starts the same way."""
        row, last = slot.row, self.busy - 1
        if row < 0 or self._owners[row] is not slot:
            raise RuntimeError("release of a KV cache slot that is not lent out")
        if row != last:  # the last busy row fills the gap, so busy rows stay contiguous
            self.swap(row, last)
            moved = self._owners[row] = self._owners[last]
            moved.row = row
        self._owners[last] = None
        self.busy -= 1
        slot.row = -1

    def common_prefix(self, row: int, ids: list[int]) -> int:
        """How many of `ids` row `row` already holds, leaving at least one to run (its logits are needed)."""
        return min(common_length(self.held[row], ids), len(ids) - 1)

    def _check_room(self, row: int, start: int, seq: int) -> None:
        # The callers size the cache and check the context first: running out here is a bug, not bad input.
        if start > self.lengths[row] or start + seq > self.capacity:
            raise RuntimeError(f"KV cache row {row} holds {self.lengths[row]} of {self.capacity} tokens: can't run {seq} at {start}")

    def _after_prefill(self, row: int, ids: list[int], start: int) -> None:
        self.held[row] = self.held[row][:start] + [int(t) for t in ids]
        self.lengths[row] = start + len(ids)

    def _after_decode(self, rows: np.ndarray, tokens: np.ndarray) -> None:
        for row, token in zip(rows.tolist(), tokens.tolist()):
            self.held[row].append(token)
        self.lengths[rows] += 1

    def rewind(self, row: int, n: int) -> None:
        """Drop row `row`'s last n positions (drafted tokens a verification rejected): its next token
        runs where they were, as if they had never been fed."""
        if not 0 <= n <= self.lengths[row]:
            raise RuntimeError(f"KV cache row {row} holds {self.lengths[row]} tokens: can't rewind {n}")
        self.lengths[row] -= n
        del self.held[row][len(self.held[row]) - n :]
        self._after_rewind(row)

    def _after_rewind(self, row: int) -> None:
        """What a layout keeps beside `lengths` follows a rewind."""

    def feed(self, rows: np.ndarray, ids: list[list[int]]) -> list[np.ndarray]:
        """ids[i] (k_i >= 1 tokens: a drafted continuation to verify) on row rows[i], after what it holds:
        per row, logits [k_i, vocab], as one-token-at-a-time feeding gives them. One token on every row
        is one batched decode; otherwise each row runs as a pass of its own, because onnxruntime's
        GroupQueryAttention (1.31) refuses a batch when more than one token runs after a past
        ("batch_size must be 1 when sequence_length > 1 and past context is given")."""
        if all(len(row_ids) == 1 for row_ids in ids):
            logits = self.decode(rows, np.array([row_ids[0] for row_ids in ids], np.int64))  # [n, vocab]
            return [logits[i : i + 1].copy() for i in range(len(rows))]
        return [self.prefill(row, row_ids, int(self.lengths[row]), last_only=False) for row, row_ids in zip(rows.tolist(), ids)]

    def _move_rows(self, dst: np.ndarray, src: np.ndarray) -> None:
        self.held = [list(h) for h in self.held]  # rows may share lists after a gather: copy before reassigning
        held = [self.held[s] for s in src.tolist()]
        for d, h in zip(dst.tolist(), held):
            self.held[d] = list(h)
        self.lengths[dst] = self.lengths[src]

    def reorder(self, dst: np.ndarray, src: np.ndarray) -> None:
        """Rows dst[i] hold what rows src[i] held (each layout moves its memory)."""
        raise NotImplementedError

    def copy_row(self, src: int, dst: int) -> None:
        """Row dst holds what row src holds (a prompt prefilled once for several sequences)."""
        self.reorder(np.array([dst]), np.array([src]))

    def swap(self, a: int, b: int) -> None:
        """Exchange two rows (busy rows are kept first)."""
        if a != b:
            self.reorder(np.array([a, b]), np.array([b, a]))
            self.moves += 1
