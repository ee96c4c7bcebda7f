"""The slot engine: continuous batching of many searches on one KV cache.

The engine owns a cache of N slots (rows). `submit` queues a search with its
prompts; each `step()` admits what fits into free slots (prefilled there while
the other slots keep their state, reusing the longest prefix a free slot still
holds), runs one token for every busy row in one batch, and lets each search
choose its next tokens. A search whose own part of a step raises (its prefill,
its choice) fails alone and the others go on. A search's rows leave as they
finish, so their slots are free for the next request at once. This is llama.cpp's server loop (slots,
`cache_prompt`) and vLLM's continuous batching, on one thread: the caller (the
server's scheduler, the desktop's worker, Run) drives it; other threads only
`cancel`.
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


class Engine:
    """N slots of one KV cache, shared by the searches submitted to it."""

    def __init__(self, session: DecoderSession, slots: int, capacity: int | None = None):
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise UsageError(f"slots must be a whole number >= 1, got {slots!r}")
        self.session = session
        self.cache: KVCache = new_cache(session, slots, capacity or session.info.n_positions)
        self.waiting: deque[tuple[Search, list[list[int]]]] = deque()  # submitted, not yet admitted
        self.active: list[Search] = []  # admitted and not done
        self._cancels: set[int] = set()  # ids of searches to cancel at the next step (any thread adds)
        self._lock = threading.Lock()  # guards _cancels
        self._stepping = threading.Lock()  # one step at a time, whichever thread drives

    @property
    def slots(self) -> int:
        return self.cache.slots

    def submit(self, search: Search, prompts: list[list[int]]) -> None:
        """Queue a search; it is admitted (prefilled) at a step when enough slots are free."""
        if search.state.started:
            raise RuntimeError("submit a search before its append_tokens")
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
        return bool(self.active or self.waiting)

    def step(self) -> list[Search]:
        """Admit what fits, run one token on every busy row, advance every search. Returns the
        searches that made tokens this step (finished ones included, once)."""
        with self._stepping:
            return self._step()

    def _step(self) -> list[Search]:
        self._apply_cancels()
        self._admit()
        started = time.perf_counter()
        self._decode(self.active)  # just-admitted searches have their prefill's logits and feed nothing
        for search in self.active:
            self._guarded(search, search.advance)
        seconds = time.perf_counter() - started
        for search in self.active:
            search.timing.decode_s += seconds
        stepped, self.active = self.active, [s for s in self.active if not s.is_done()]
        return stepped

    def _apply_cancels(self) -> None:
        with self._lock:
            cancels, self._cancels = self._cancels, set()
        if not cancels:
            return
        for search in [s for s in self.active if id(s) in cancels] + [s for s, _ in self.waiting if id(s) in cancels]:
            search.cancel()  # gives its slots back; a waiting one is just marked done
        self.active = [s for s in self.active if not s.is_done()]
        self.waiting = deque((s, p) for s, p in self.waiting if not s.is_done())

    def _admit(self) -> None:
        """Prefill waiting searches, in order, while their rows fit in the free slots."""
        while self.waiting and self.cache.free_slots >= self.waiting[0][0].state.rows_needed(self.waiting[0][1]):
            search, prompts = self.waiting.popleft()
            search.state.attach(self.cache)
            self._guarded(search, search.append_tokens, prompts)
            if not search.is_done():  # a zero-token budget is done at once
                self.active.append(search)

    @staticmethod
    def _guarded(search: Search, call, *args) -> None:
        """Run one search's own part of a step; if it raises, that search alone fails (its caller
        gets the error) and the step goes on for the others. The batched forward pass is everyone's:
        its failure still propagates."""
        try:
            call(*args)
        except Exception as e:
            search.fail(e)

    def _decode(self, searches: list[Search]) -> None:
        """One batched forward pass over the rows these searches feed."""
        fed = [(s, *s.state.to_feed()) for s in searches]
        fed = [f for f in fed if len(f[1])]
        if not fed:
            return
        logits = self.cache.decode(np.concatenate([f[2] for f in fed]), np.concatenate([f[3] for f in fed]))  # [rows, vocab]
        at = 0
        for search, rows, _, _ in fed:
            search.state.take_logits(rows, logits[at : at + len(rows)])
            at += len(rows)
