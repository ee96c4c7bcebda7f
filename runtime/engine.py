"""The slot engine: continuous batching of many searches on one KV cache.

The engine owns a cache of N slots (rows). `submit` queues a search with its
prompts. Each `step()` is a token budget (`step_tokens`), as in vLLM's
scheduler and llama.cpp's `update_slots`: first one token for every running
row, in one batched pass; then prompt tokens, up to what the budget leaves, a
chunk at a time, for the searches being admitted (in order, while their rows
fit in the free slots; each prompt runs in the free row that already holds the
longest prefix of it, and only the rest runs). A long prompt is prefilled over
several steps while the others keep decoding; a search whose prompts have all
run chooses its first tokens in that step. Without a budget (None) a step
admits and prefills whatever fits at once.

The prompt chunks run as a pass of their own beside the decode pass: onnxruntime's
GroupQueryAttention (1.31) refuses a batch of several rows when more than one
token runs after a past, and it takes one sequence length for the whole batch,
so a packed pass would also pad every row to the chunk's length.

A search whose own part of a step raises (its prefill, its choice) fails alone
and the others go on. A search's rows leave as they finish, so their slots are
free for the next request at once. One thread drives it (the server's
scheduler, the desktop's worker, Run); other threads only `cancel`.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

from .decode_state import check_prompts
from .errors import UsageError
from .kv_cache import KVCache, new_cache
from .search import Search
from .session import DecoderSession


# The budget a server's steps run with (gpt2onnx serve --step-tokens): chosen by measurement, see the
# README's Serve section. The engine itself has no cap unless given one.
SERVE_STEP_TOKENS = 128


class Engine:
    """N slots of one KV cache, shared by the searches submitted to it."""

    def __init__(self, session: DecoderSession, slots: int, capacity: int | None = None, step_tokens: int | None = None):
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise UsageError(f"slots must be a whole number >= 1, got {slots!r}")
        if step_tokens is not None and (isinstance(step_tokens, bool) or not isinstance(step_tokens, int) or step_tokens < 1):
            raise UsageError(f"step_tokens must be a whole number >= 1 (or None: no limit), got {step_tokens!r}")
        self.session = session
        self.step_tokens = step_tokens  # tokens one step runs at most (decode rows first, then prompt chunks); None: no limit
        self.cache: KVCache = new_cache(session, slots, capacity or session.info.n_positions)
        self.waiting: deque[tuple[Search, list[list[int]]]] = deque()  # submitted, not yet admitted
        self.active: list[Search] = []  # admitted, prompts run, and not done
        self.prefilling: list[Search] = []  # admitted (their rows taken), prompts still running a chunk a step
        self._cancels: set[int] = set()  # ids of searches to cancel at the next step (any thread adds)
        self._lock = threading.Lock()  # guards _cancels
        self._stepping = threading.Lock()  # one step at a time, whichever thread drives

    @property
    def slots(self) -> int:
        return self.cache.slots

    def submit(self, search: Search, prompts: list[list[int]], checked: bool = False) -> None:
        """Queue a search; it is admitted (prefilled) at a step when enough slots are free. `checked`:
        the caller already checked the prompts (a server does, before it answers 400)."""
        if search.state.started:
            raise RuntimeError("submit a search before its append_tokens")
        if not checked:
            check_prompts(prompts, self.session.info)  # bad input fails here, for its sender, not in a step
        needed = search.state.rows_needed(prompts)
        if needed > self.slots:
            raise UsageError(f"this request needs {needed} slots (prompts x sequences or beams) but the engine has {self.slots}")
        self.waiting.append((search, prompts))

    def cancel(self, search: Search) -> None:
        """Stop a search at the next step (any thread); a waiting one never starts."""
        with self._lock:
            self._cancels.add(id(search))

    def has_work(self) -> bool:
        return bool(self.active or self.prefilling or self.waiting)

    def step(self) -> list[Search]:
        """Run one token on every running row, then prompt chunks up to the budget (admitting what
        fits), and advance every search that has logits. Returns the searches that made tokens this
        step (finished ones included, once)."""
        with self._stepping:
            return self._step()

    def _step(self) -> list[Search]:
        self._apply_cancels()
        started = time.perf_counter()
        decoded = self._decode(self.active)  # one token for every running row, first
        seconds = time.perf_counter() - started  # decode time: the prompt chunks count as their own searches' prefill
        ready = self._prefill(None if self.step_tokens is None else max(self.step_tokens - decoded, self._min_chunk))
        self.active += ready  # their prompts' logits are in: they choose their first tokens now
        started = time.perf_counter()
        for search in self.active:
            self._guarded(search, search.advance)
        seconds += time.perf_counter() - started
        for search in self.active:
            search.timing.decode_s += seconds
        stepped, self.active = self.active, [s for s in self.active if not s.is_done()]
        return stepped

    @property
    def _min_chunk(self) -> int:
        """Prompt tokens a step runs even when the running rows use up its budget, so prompts still move."""
        return max(1, self.step_tokens // 4)

    def _apply_cancels(self) -> None:
        with self._lock:
            cancels, self._cancels = self._cancels, set()
        if not cancels:
            return
        for search in [s for s in self.active + self.prefilling if id(s) in cancels] + [s for s, _ in self.waiting if id(s) in cancels]:
            search.cancel()  # gives its slots back; a waiting one is just marked done
        self.active = [s for s in self.active if not s.is_done()]
        self.prefilling = [s for s in self.prefilling if not s.is_done()]
        self.waiting = deque((s, p) for s, p in self.waiting if not s.is_done())

    def _prefill(self, budget: int | None) -> list[Search]:
        """Run prompt tokens, up to `budget` (None: all): first of the searches already prefilling, then of
        waiting ones, admitted in order while their rows fit in the free slots. Only the part of a prompt
        its row does not already hold runs (prefix reuse). Returns the searches whose prompts have all run."""
        ready = []
        while budget is None or budget > 0:
            if not self.prefilling:
                if not (self.waiting and self.cache.free_slots >= self.waiting[0][0].state.rows_needed(self.waiting[0][1])):
                    break
                search, prompts = self.waiting.popleft()
                search.state.attach(self.cache)
                self._guarded(search, search.begin_prefill, prompts)
                if search.is_done():  # it failed taking its rows
                    continue
                self.prefilling.append(search)
            search = self.prefilling[0]
            ran = self._guarded(search, search.prefill_some, budget)
            if budget is not None:
                budget -= ran or 0
            if search.is_done() or not search.state.prefilling:
                self.prefilling.pop(0)
                if not search.is_done():  # a zero-token budget is done at once
                    ready.append(search)
        return ready

    @staticmethod
    def _guarded(search: Search, call, *args):
        """Run one search's own part of a step; if it raises, that search alone fails (its caller
        gets the error) and the step goes on for the others. The batched forward pass is everyone's:
        its failure still propagates."""
        try:
            return call(*args)
        except Exception as e:
            search.fail(e)
            return None

    def _decode(self, searches: list[Search]) -> int:
        """One batched forward pass over the rows these searches feed; returns how many rows ran."""
        fed = [(s, *s.state.to_feed()) for s in searches]
        fed = [f for f in fed if len(f[1])]
        if not fed:
            return 0
        logits = self.cache.decode(np.concatenate([f[2] for f in fed]), np.concatenate([f[3] for f in fed]))  # [rows, vocab]
        at = 0
        for search, rows, _, _ in fed:
            search.state.take_logits(rows, logits[at : at + len(rows)])
            at += len(rows)
        return at
