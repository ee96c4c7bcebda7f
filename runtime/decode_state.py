"""The decode state every search shares: its rows in a KV cache, the tokens so
far, positions, the token budget and the timing.

A search asks it to prefill prompts (begin, then prefill_some: all at once, or a
chunk a step in the slot engine), to feed the tokens it chose, and to give a
row back when that row is finished; it never runs the session itself. Each
prompt is run once, in a row that may already hold a prefix of it (prefix
reuse), and copied to the prompt's other rows (num_return_sequences, beams).
Rows are lent by the cache as Slots, so the slot engine can move them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from . import processors
from .config import GenerationConfig
from .errors import UsageError
from .kv_cache import KVCache, new_cache
from .slots import Slot
from .results import Timing
from .session import DecoderSession

SLIDE_KEEP = 0.75  # context_overflow="slide": the fraction of n_positions a slid window keeps
# A prompt token at position p costs 1 + p / (ATTENTION_SPAN * n_embd) tokens of a step's budget: its
# attention over the p before it. Measured on gpt2-124M fp32 on the CPU (a chunk of 32-64 tokens beside
# 8 decode rows, at positions 0 and 900): attention costs about 1.5 times its share of the FLOPs
# (which would be p / (6 n_embd)). Without it a long prompt's late chunks made the slowest steps.
ATTENTION_SPAN = 4


def chunk_tokens(budget: float, start: int, n_embd: int) -> int:
    """How many prompt tokens from position `start` a budget pays for (maybe none)."""
    return int(budget / (1 + start / (ATTENTION_SPAN * n_embd)))


def as_rows(ids) -> list[list[int]]:
    """One list of ids per prompt; a flat list is one prompt."""
    if len(ids) and np.ndim(ids[0]) == 0:
        return [[int(t) for t in ids]]
    return [[int(t) for t in row] for row in ids]


def check_prompts(prompts: list[list[int]], info) -> None:
    """Every prompt has tokens, all inside the vocabulary, and fits the context."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise UsageError("a prompt has no tokens: give at least one token per row")
    if any(not 0 <= t < info.vocab_size for p in prompts for t in p):
        raise UsageError(f"a token id is outside the vocabulary [0, {info.vocab_size})")
    width = max(map(len, prompts))
    if width > info.n_positions:
        raise UsageError(f"the prompt is {width} tokens but the model's context (n_positions) is {info.n_positions}: shorten the prompt")


class DecodeState:
    """One request's rows: `rows_per_prompt` rows for each prompt, in a cache of its own or the engine's."""

    def __init__(self, session: DecoderSession, config: GenerationConfig, rows_per_prompt: int):
        self.session, self.config, self.info = session, config, session.info
        self.rows_per_prompt = rows_per_prompt
        self.timing = Timing()
        self.cache: KVCache | None = None  # the engine's (attach) or, at prefill, one of its own
        self.slots: list[Slot | None] = []  # per row; None once given back
        self.prompts: list[list[int]] = []
        self.width = 0  # the longest prompt: HF's padded input length
        self.budget = 0  # new tokens allowed (max_new_tokens, or max_length - width)
        self.tokens = np.zeros((0, 0), np.int64)  # [rows, columns]: prompts left-padded, then new ids (grows when sliding)
        self.length = 0  # columns of tokens in use
        self.starts = np.zeros(0, np.int64)  # [rows]: column of each row's first real token
        self.logits = np.zeros((0, 0), np.float32)  # [rows, vocab]: scores for each row's next choice
        self.pending = np.zeros(0, np.int64)  # [rows]: chosen tokens the model has not run yet
        self.feed = np.zeros(0, bool)  # [rows]: rows whose pending token runs at the next step
        self.live = np.zeros(0, bool)  # [rows]: rows that still hold a slot
        self.fed = np.zeros(0, np.int64)  # [rows]: tokens each row holds in the cache (its next position)
        self.most_fed = 0  # fed.max(), kept as a Python int: searches check it every step
        self._feed_all = False  # every row runs at the next step (feed is all True): the usual step
        self._released = 0  # rows given back (live.all() is `not _released`)
        self._physical = (-1, np.zeros(0, np.int64))  # (cache.moves when computed, every row's cache row)
        self._all_rows = np.zeros(0, np.int64)  # [rows]: 0 .. rows - 1
        self._queue: list[list] = []  # prompts still to run: [ids, first row's Slot, tokens of it in the cache]
        self._pending_prompts: list[list[int]] = []  # the prompts begin() took, until every one has run
        self._last_logits: list[np.ndarray] = []  # per prompt run: its last position's logits [vocab]

    @property
    def started(self) -> bool:
        return bool(self.prompts)

    @property
    def rows(self) -> int:
        return len(self.slots)

    def rows_needed(self, prompts: list[list[int]]) -> int:
        return len(prompts) * self.rows_per_prompt

    def attach(self, cache: KVCache) -> None:
        """Run in the slot engine's cache instead of a cache of its own."""
        self.cache = cache

    def begin(self, prompts: list[list[int]]) -> None:
        """Take the prompts' rows from the cache (each prompt's first row the one holding most of it) and
        set up the per-row arrays; prefill_some then runs them, all at once or a chunk a step."""
        if self.started or self._queue:
            raise RuntimeError("append_tokens after generation started is not supported")
        start = time.perf_counter()  # the prompts were checked once, by whoever took them in (check_prompts)
        self.width = max(map(len, prompts))
        self.budget = self.config.new_token_budget(self.width)
        n, n_positions = self.rows_needed(prompts), self.info.n_positions
        if self.config.context_overflow == "slide":  # the rows run on past the context: grow as they go (push)
            room, capacity = min(self.budget, n_positions), n_positions
        else:  # a row fits at most n_positions - len + 1 new tokens (the last is never fed)
            room = min(self.budget, n_positions - min(map(len, prompts)) + 1)
            capacity = self.width + max(self.budget - 1, 0)
        # The per-row arrays come first, so a failure below leaves a state that can give its slots back.
        self.tokens = np.zeros((n, self.width + room), np.int64)  # [rows, width + room]
        self.starts = np.zeros(n, np.int64)  # [rows]
        for r in range(n):
            prompt = prompts[r // self.rows_per_prompt]
            self.starts[r] = self.width - len(prompt)
            self.tokens[r, self.starts[r] : self.width] = prompt
        self.length = self.width
        self.pending = np.zeros(n, np.int64)  # [rows]
        self.feed = np.zeros(n, bool)  # [rows]
        self.live = np.ones(n, bool)  # [rows]
        if self.cache is None:
            self.cache = new_cache(self.session, n, capacity)
        for prompt in prompts:
            first = self.cache.alloc(prompt)
            self.slots.append(first)
            reused = self.cache.common_prefix(first.row, prompt)  # only the rest is run (prefix reuse)
            self.timing.reused_tokens += reused
            self._queue.append([prompt, first, reused])
            for _ in range(self.rows_per_prompt - 1):
                self.slots.append(self.cache.alloc())  # filled by a copy once the prompt has run
        self._pending_prompts = prompts
        self.timing.prefill_s += time.perf_counter() - start

    @property
    def prefilling(self) -> bool:
        """begin() was called and some prompt tokens have not run yet."""
        return bool(self._queue)

    def prefill_some(self, budget: float | None, least: int = 1) -> float:
        """Run more prompt tokens, as many as `budget` pays for (None: all of them; chunk_tokens: a token
        late in a prompt costs more), prompt after prompt, each in its first row after what that row
        holds; returns the budget spent. At least `least` tokens run, whatever they cost (the engine's
        first chunk of a step: prompts always move). A prompt whose last token has run is copied to its
        other rows; when every prompt has, the state is ready to decode."""
        start, spent = time.perf_counter(), 0.0
        while self._queue:
            entry = self._queue[0]
            prompt, first, done = entry
            n = None if budget is None else max(chunk_tokens(budget - spent, done, self.info.n_embd), 0 if spent else least)
            if n == 0:
                break
            chunk = prompt[done:] if n is None else prompt[done : done + n]
            last = self.cache.prefill(first.row, chunk, done)[-1]  # [vocab]: needed only after the last chunk
            spent += len(chunk) * (1 + done / (ATTENTION_SPAN * self.info.n_embd))
            entry[2] = done + len(chunk)
            if entry[2] < len(prompt):
                continue
            self._queue.pop(0)
            self._last_logits.append(last)
            at = self.slots.index(first)
            for copy in self.slots[at + 1 : at + self.rows_per_prompt]:
                self.cache.copy_row(first.row, copy.row)
        if not self._queue and self._pending_prompts:
            self._ready()
        self.timing.prefill_s += time.perf_counter() - start
        return spent

    def _ready(self) -> None:
        """Every prompt has run: logits for every row, and generation may start."""
        prompts, self._pending_prompts = self._pending_prompts, []
        self.prompts = prompts
        self._physical = (-1, self._physical[1])
        self.logits = np.repeat(np.stack(self._last_logits), self.rows_per_prompt, axis=0)  # [rows, vocab]
        self._last_logits = []
        self.fed = np.repeat(np.array([len(p) for p in prompts], np.int64), self.rows_per_prompt)  # [rows]
        self.most_fed = self.width
        self._all_rows = np.arange(len(self.slots))  # [rows]

    def push(self, tokens: np.ndarray) -> None:
        """Record one chosen token per row [rows]."""
        if self.length == self.tokens.shape[1]:  # a sliding row outran the buffer: double it (memory follows tokens made)
            self.tokens = np.concatenate([self.tokens, np.zeros_like(self.tokens)], axis=1)  # [rows, 2 * columns]
        self.tokens[:, self.length] = tokens
        self.length += 1
        self.timing.new_tokens += 1
        self.pending = tokens

    def schedule(self, rows: np.ndarray | None = None) -> None:
        """The rows [rows] (bool) whose pending token runs at the next step, or None for every row;
        rows given back never run."""
        if rows is None and not self._released:  # a flag, not three array ops per step: Python's cost per token
            self._feed_all = True
        else:
            self.feed = self.live.copy() if rows is None else rows & self.live
            self._feed_all = False

    def physical_rows(self, rows: np.ndarray) -> np.ndarray:
        """The cache rows of these rows of ours (slots move when the cache keeps its busy rows first)."""
        moves, physical = self._physical
        if moves != self.cache.moves:
            physical = np.array([-1 if s is None else s.row for s in self.slots], np.int64)  # [rows]
            self._physical = (self.cache.moves, physical)
        return physical if rows is self._all_rows else physical[rows]

    def to_feed(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What the next step runs: our row indices, their cache rows and their tokens."""
        if self._feed_all or self.feed.all():  # every row runs: the usual step, no gathers
            return self._all_rows, self.physical_rows(self._all_rows), self.pending
        rows = np.flatnonzero(self.feed)
        return rows, self.physical_rows(rows), self.pending[rows]

    def take_logits(self, rows: np.ndarray, logits: np.ndarray) -> None:
        """The step ran: logits [len(rows), vocab] for these rows of ours. They may be the cache's buffer,
        valid until its next step; every search chooses from them before that. Rows that did not run
        (finished, about to slide) keep no logits worth reading."""
        if len(rows) == len(self.logits):  # every row ran (rows is _all_rows)
            self.logits = logits
            if self._feed_all:
                self._feed_all = False
            else:
                self.feed[:] = False
            self.fed += 1
            self.most_fed += 1
        else:
            if self.logits.base is not None:  # last step's view of the cache's buffer: own the rows from now on
                self.logits = np.zeros_like(self.logits)  # [rows, vocab]
            self.logits[rows] = logits
            self.feed[rows] = False
            self.fed[rows] += 1
            self.most_fed = int(self.fed.max())

    def step(self) -> None:
        """Run the fed rows one token (a search on its own; the engine batches this across searches)."""
        rows, physical, tokens = self.to_feed()
        if len(rows):
            self.take_logits(rows, self.cache.decode(physical, tokens))

    def sequence(self, row: int) -> np.ndarray:
        """Row `row`'s prompt and new ids, padding removed."""
        return self.tokens[row, self.starts[row] : self.length]

    def slide(self, row: int) -> None:
        """context_overflow="slide": run the row's last SLIDE_KEEP * n_positions tokens (its pending one
        included) as a fresh prompt in its own row. GPT-2's positions are absolute, so the window
        restarts at position 0; the text itself runs on unbroken."""
        keep = max(1, int(self.info.n_positions * SLIDE_KEEP))
        window = self.sequence(row)[-keep:].tolist()
        self.logits[row] = self.cache.prefill(self.slots[row].row, window, 0)[-1]
        self.feed[row] = False
        self.fed[row] = len(window)
        self.most_fed = int(self.fed.max())

    def history(self) -> processors.History:
        """What the logits processors see: each row's ids so far, and HF's padded length."""
        return _History(self)

    def release(self, row: int) -> None:
        """Give row `row`'s slot back (it keeps its keys/values for prefix reuse)."""
        if self.slots[row] is not None:
            self.cache.release(self.slots[row])
            self.slots[row] = None
            if self._feed_all:  # the flag becomes the mask before one row leaves it
                self.feed[:] = self.live
                self._feed_all = False
            self.feed[row] = self.live[row] = False
            self._released += 1
            self._physical = (-1, self._physical[1])

    def release_all(self) -> None:
        for row in range(self.rows):
            self.release(row)


class _Sequences(Sequence):
    """Each row's ids so far (padding removed), sliced only when a processor reads a row:
    most steps' processors (min_length, none at all) never do."""

    def __init__(self, state: DecodeState):
        self._state = state

    def __len__(self) -> int:
        return self._state.rows

    def __getitem__(self, row: int) -> np.ndarray:
        if not 0 <= row < len(self):
            raise IndexError(row)
        return self._state.sequence(row)


class _History:
    """processors.History read from the state when a processor asks: a search makes one and keeps it
    (the state holds no reference back, so a finished state is freed at once, not by the cycle collector)."""

    def __init__(self, state: DecodeState):
        self._state = state
        self.tokens = _Sequences(state)

    @property
    def new_tokens(self) -> int:
        return self._state.timing.new_tokens

    @property
    def length(self) -> int:
        return self._state.length

    generated = processors.History.generated
