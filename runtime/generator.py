"""The step API for greedy search and sampling: append_tokens ->
generate_next_token ... until is_done.

A Generator drives one DecoderSession for one batch of rows: it prefills the
prompts (left-padded), keeps the KV cache, runs each step's logits through the
processors and the sampler, and feeds the chosen tokens back. The CLI, the
streaming API, the app and the benchmarks all run on it (or on BeamSearch,
its beam-search twin).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from . import processors, sampling, warpers
from .config import GenerationConfig
from .errors import UsageError
from .kv_cache import KVCache, new_cache
from .session import DecoderSession

EOS, LENGTH, CONTEXT, STOP, CANCELLED = "eos", "length", "context", "stop", "cancelled"  # why a row stopped
SLIDE_KEEP = 0.75  # context_overflow="slide": the fraction of n_positions a slid window keeps


def as_rows(ids: Sequence[Sequence[int]] | Sequence[int]) -> list[list[int]]:
    """One list of ids per row; a flat list is one row."""
    if len(ids) and np.ndim(ids[0]) == 0:
        return [[int(t) for t in ids]]
    return [[int(t) for t in row] for row in ids]


def left_pad(rows: list[list[int]], pad: int, info) -> tuple[np.ndarray, np.ndarray]:
    """Check prompt rows against the model and left-pad them: ids and mask, each [rows, width]."""
    if not rows or any(len(row) == 0 for row in rows):
        raise UsageError("a prompt has no tokens: give at least one token per row")
    if any(not 0 <= t < info.vocab_size for row in rows for t in row):
        raise UsageError(f"a token id is outside the vocabulary [0, {info.vocab_size})")
    width = max(map(len, rows))
    if width > info.n_positions:
        raise UsageError(
            f"the prompt is {width} tokens but the model's context (n_positions) is {info.n_positions}: shorten the prompt"
        )
    input_ids = np.full((len(rows), width), pad, np.int64)  # [rows, width]
    mask = np.zeros((len(rows), width), np.int64)  # [rows, width]
    for r, row in enumerate(rows):
        input_ids[r, width - len(row) :] = row
        mask[r, width - len(row) :] = 1
    return input_ids, mask


@dataclass
class Timing:
    """Where the time of one generation went."""

    prefill_s: float = 0.0  # running the prompt through the model
    decode_s: float = 0.0  # every later step: forward pass plus choosing the token
    new_tokens: int = 0  # steps taken (tokens made per row, padding included)


@dataclass
class TokenLogprobs:
    """One generated token's log-probability under the model, and the top alternatives."""

    token_id: int
    logprob: float
    top: list[tuple[int, float]] = field(default_factory=list)  # (token id, log-probability), most likely first


class Generator:
    """Greedy search or sampling over a batch of rows, one token per step.

    Each prompt becomes `num_return_sequences` rows. Randomness comes only from
    `rng` (a numpy Generator), used only when do_sample is set.
    """

    def __init__(self, session: DecoderSession, config: GenerationConfig, rng: np.random.Generator | None = None):
        if config.num_beams > 1:
            raise UsageError("num_beams > 1 needs BeamSearch, not Generator")
        self.session = session
        self.config = config
        self.rng = rng if rng is not None else np.random.default_rng()
        self.timing = Timing()
        self.finish_reasons: list[str | None] = []  # per row; None while running
        self.running: np.ndarray | None = None  # bool [rows]: still generating
        self.logprobs: list[list[TokenLogprobs]] = []  # per row, when config.logprobs is set
        self.slides = 0  # times the context window slid (context_overflow="slide")
        self._cache: KVCache | None = None
        self._tokens: np.ndarray | None = None  # int64 [rows, prompt + budget]: allocated once, filled per step
        self._length = 0  # columns of _tokens in use
        self._logits: np.ndarray | None = None  # [rows, vocab]: scores for the next choice
        self._pending: np.ndarray | None = None  # [rows]: chosen, not yet run through the model
        self._starts: np.ndarray | None = None  # [rows]: index of each row's first real token
        self._prompt_length = 0
        self._budget = 0
        self._eos = np.array(config.eos_token_ids, np.int64)
        self._pad = np.int64(config.pad)
        self._processors = processors.chain(config)
        self._slide = False  # the context is full: slide the window before the next step

    @property
    def rows_per_prompt(self) -> int:
        return self.config.num_return_sequences

    def append_tokens(self, ids: Sequence[Sequence[int]] | Sequence[int]) -> None:
        """Run the prompts through the model: one list of ids per prompt (or one flat list).

        Rows of different lengths are left-padded. Must come before generate_next_token.
        """
        if self._cache is not None:
            raise RuntimeError("append_tokens after generation started is not supported")
        rows = [row for row in as_rows(ids) for _ in range(self.rows_per_prompt)]
        input_ids, new_mask = left_pad(rows, int(self._pad), self.session.info)
        start = time.perf_counter()
        self._prompt_length = self._length = input_ids.shape[1]
        self._budget = self.config.new_token_budget(self._prompt_length)
        n_positions = self.session.info.n_positions
        if self.config.context_overflow == "slide":  # the window slides: any budget fits
            room, capacity = self._budget, n_positions
        else:  # at most n_positions - prompt + 1 new tokens fit (the last one is never fed)
            room = min(self._budget, n_positions - self._prompt_length + 1)
            capacity = self._prompt_length + max(room - 1, 0)
        self._cache = new_cache(self.session, len(rows), capacity)
        self._logits = self._cache.step(input_ids, new_mask, last_only=True)[:, -1, :]  # [rows, vocab]
        self._starts = input_ids.shape[1] - new_mask.sum(axis=1)
        self.finish_reasons = [None] * len(rows)
        self.running = np.ones(len(rows), bool)
        self._ended_at = [None] * len(rows)  # per row: tokens made when it stopped
        self.logprobs = [[] for _ in rows]
        self._tokens = np.empty((len(rows), self._prompt_length + room), np.int64)  # [rows, prompt + room]
        self._tokens[:, : self._prompt_length] = input_ids
        if self._budget == 0:
            for r in range(len(rows)):
                self.finish_row(r, LENGTH)
        self.timing.prefill_s += time.perf_counter() - start

    @property
    def sequences(self) -> np.ndarray:
        """Prompt and generated ids so far, int64 [rows, prompt + new], left-padded."""
        return self._tokens[:, : self._length]

    def _history(self) -> processors.History:
        tokens = [self.sequences[r, s:] for r, s in enumerate(self._starts)]
        return processors.History(tokens, self.timing.new_tokens, self.sequences.shape[1])

    def _choose(self, logits: np.ndarray) -> np.ndarray:
        """Processors, then (when sampling) warpers and a draw: logits [rows, vocab] -> ids [rows]."""
        scores = processors.apply(self._processors, logits, self._history()) if self._processors else logits
        if not self.config.do_sample:
            return sampling.greedy(scores)
        return sampling.sample_rows(warpers.warp_rows(scores, self.config), self.rng)

    def generate_next_token(self) -> np.ndarray:
        """Choose one token per row (pad for rows already finished) and return them [rows]."""
        if self._cache is None:
            raise RuntimeError("call append_tokens before generate_next_token")
        if self.is_done():
            raise RuntimeError("generation is done: check is_done() before generate_next_token")
        start = time.perf_counter()
        if self._slide:
            self._slide_window()
        elif self._pending is not None:
            ones = np.ones((len(self._pending), 1), np.int64)
            self._logits = self._cache.step(self._pending[:, None], ones)[:, -1, :]
        running = self.running.copy()  # [rows]: the rows this step makes a real token for
        tokens = np.where(running, self._choose(self._logits), self._pad)  # [rows]
        if self.config.logprobs is not None:
            self._record_logprobs(tokens, running)
        self._tokens[:, self._length] = tokens
        self._length += 1
        self.timing.new_tokens += 1
        self._update_finished(tokens, running)
        self._pending = tokens
        self.timing.decode_s += time.perf_counter() - start
        return tokens

    def _slide_window(self) -> None:
        """context_overflow="slide": start a fresh cache on each row's last SLIDE_KEEP * n_positions
        tokens (the pending one included), as if they were the prompt. GPT-2's positions are
        absolute, so the window restarts at position 0; the text itself runs on unbroken."""
        keep = max(1, int(self.session.info.n_positions * SLIDE_KEEP))
        rows = [self.sequences[r, s:][-keep:].tolist() for r, s in enumerate(self._starts)]
        input_ids, new_mask = left_pad(rows, int(self._pad), self.session.info)
        self._cache = new_cache(self.session, len(rows), self.session.info.n_positions)
        self._logits = self._cache.step(input_ids, new_mask, last_only=True)[:, -1, :]
        self._slide = False
        self.slides += 1

    def _record_logprobs(self, tokens: np.ndarray, running: np.ndarray) -> None:
        chosen, top_ids, top_logp = sampling.logprobs(self._logits, tokens, self.config.logprobs)
        for r in np.flatnonzero(running):
            top = list(zip(top_ids[r].tolist(), top_logp[r].tolist()))
            self.logprobs[r].append(TokenLogprobs(int(tokens[r]), float(chosen[r]), top))

    def _update_finished(self, tokens: np.ndarray, running: np.ndarray) -> None:
        hit_eos = running & (tokens[:, None] == self._eos[None, :]).any(axis=1)  # [rows]; np.isin costs ~50 us a step
        out_of_context = self._cache.length >= self.session.info.n_positions  # no slot left to feed a token
        if out_of_context and self.config.context_overflow == "slide":
            self._slide, out_of_context = True, False
        for r in np.flatnonzero(running):
            if hit_eos[r]:
                self.finish_row(r, EOS)
            elif self.timing.new_tokens >= self._budget:
                self.finish_row(r, LENGTH)
            elif out_of_context:
                self.finish_row(r, CONTEXT)

    def finish_row(self, row: int, reason: str) -> None:
        """Stop one row from outside (a stop string, a cancel): it gets padding from now on."""
        if self.finish_reasons[row] is None:
            self.finish_reasons[row] = reason
            self.running[row] = False
            self._ended_at[row] = self.timing.new_tokens

    def cancel(self) -> None:
        """Stop every running row now."""
        for row in range(len(self.finish_reasons)):
            self.finish_row(row, CANCELLED)

    def is_done(self) -> bool:
        """True once every row has stopped (eos, token budget, context full, or finished from outside)."""
        return self._cache is not None and not self.running.any()

    def get_next_tokens(self) -> np.ndarray:
        """The tokens chosen by the last generate_next_token [rows]."""
        return self._tokens[:, self._length - 1]

    def generated_ids(self, row: int) -> list[int]:
        """Row `row`'s new token ids up to where it stopped (its eos included), without padding."""
        end = self._ended_at[row] if self._ended_at[row] is not None else self.timing.new_tokens
        return self._tokens[row, self._prompt_length : self._prompt_length + end].tolist()
