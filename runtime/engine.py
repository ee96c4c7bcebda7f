"""The slot engine: continuous batching of many searches on one KV cache.

The engine owns a cache of N slots (rows). `submit` queues a search with its
prompts. Each `step()` is a token budget (`step_tokens`), as in vLLM's
scheduler and llama.cpp's `update_slots`: first one token for every running
row, in one batched pass; then prompt tokens, as many as the budget left pays
for (a token's attention over a long prompt's past counts too), a chunk at a time, for the searches being admitted (in order, while their rows
fit in the free slots; each prompt runs in the free row that already holds the
longest prefix of it, and only the rest runs). A long prompt is prefilled over
several steps while the others keep decoding; a search whose prompts have all
run chooses its first tokens in that step. Without a budget (None) a step
admits and prefills whatever fits at once.

On an export whose graph has the chunk part (the manifest's `packed_chunk`, every
GroupQueryAttention export since it), the step's first prompt chunk and the decode
tokens run in one pass (KVCache.ride): the weights are read once for both, so a
step that prefills costs little more than its chunk alone. Further chunks in the
same step, and every chunk on older exports, run as passes of their own.

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
SERVE_STEP_TOKENS = 56


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
        fed, rows, tokens = self._feed()  # one token for every running row
        # The step's first prompt chunk carries the decode tokens in its pass (a graph with the chunk part).
        # Until that pass nothing moves a running row: admitting takes free rows only.
        rode = fed and (self.prefilling or self.waiting) and self.cache.ride(rows, tokens)
        decoding = len(rows) if fed else 0
        # With the decode tokens riding, a capped step runs that one chunk: a further one would be a pass of
        # its own, another read of every weight for a few tokens, while the running rows wait.
        ready = self._prefill(None if self.step_tokens is None else max(self.step_tokens - decoding, self._min_chunk), once=bool(rode and self.step_tokens))
        carried = self.cache.unride() if rode else None
        # decode time: prompt chunks count as their own searches' prefill, and a carrying pass as both
        seconds = self.cache.carry_seconds if carried is not None else 0.0
        if fed:
            started = time.perf_counter()
            if carried is None:  # asked again: a search that failed in its prefill gave rows back, and that moves rows
                fed, rows, tokens = self._feed()
            self._take(fed, carried if carried is not None else self.cache.decode(rows, tokens))
            seconds += time.perf_counter() - started
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

    def _prefill(self, budget: int | None, once: bool = False) -> list[Search]:
        """Run prompt tokens, as many as `budget` pays for (None: all; a token late in a long prompt costs
        more, decode_state.chunk_tokens): first of the searches already prefilling, then of
        waiting ones, admitted in order while their rows fit in the free slots (`once`: one search's
        chunk at most). Only the part of a prompt its row does not already hold runs (prefix reuse).
        Returns the searches whose prompts have all run."""
        ready, moved = [], False
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
            # The step's first chunk runs one token at least, so prompts always move; later ones only what the rest pays for.
            ran = self._guarded(search, search.prefill_some, budget, 0 if moved else 1)
            moved = True
            if budget is not None:
                budget -= ran or 0
            if search.is_done() or not search.state.prefilling:
                self.prefilling.pop(0)
                if not search.is_done():  # a zero-token budget is done at once
                    ready.append(search)
            elif not ran:  # the rest of the budget pays for none of its next tokens
                break
            if once:
                break
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

    def _feed(self) -> tuple[list, np.ndarray | None, np.ndarray | None]:
        """What the running searches feed this step: [(search, its rows, cache rows, tokens)] for those
        that feed any, and all their cache rows [n] and tokens [n] (None when none)."""
        fed = [(s, *s.state.to_feed()) for s in self.active]
        fed = [f for f in fed if len(f[1])]
        if not fed:
            return fed, None, None
        return fed, np.concatenate([f[2] for f in fed]), np.concatenate([f[3] for f in fed])

    @staticmethod
    def _take(fed: list, logits: np.ndarray) -> None:
        """Hand each search its rows' logits [rows, vocab] from the step's batched decode."""
        at = 0
        for search, rows, _, _ in fed:
            search.state.take_logits(rows, logits[at : at + len(rows)])
            at += len(rows)
