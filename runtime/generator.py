"""The step API: append_tokens -> generate_next_token ... until is_done.

A Generator drives one DecoderSession for one batch: it prefills the prompts,
keeps the KV cache, hands each step's logits to the search and feeds the chosen
tokens back. The CLI, the streaming API and the benchmarks all run on it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from . import search
from .config import GenerationConfig
from .errors import UsageError
from .kv_cache import KVCache
from .session import DecoderSession

EOS, LENGTH, CONTEXT = "eos", "length", "context"  # why a row stopped


def run_step(session: DecoderSession, cache: KVCache, input_ids: np.ndarray, new_mask: np.ndarray) -> np.ndarray:
    """Run new tokens [batch, seq] (mask [batch, seq]) on the cache and advance it; return logits [batch, seq, vocab]."""
    mask, positions = cache.inputs_for(new_mask)
    logits, present = session.forward(input_ids, mask, positions, cache.past)
    cache.advance(mask, present)
    return logits


@dataclass
class Timing:
    """Where the time of one generation went."""

    prefill_s: float = 0.0  # running the prompt through the model
    decode_s: float = 0.0  # every later step: forward pass plus choosing the token
    new_tokens: int = 0  # steps taken (tokens made per row, padding included)


class Generator:
    """Decodes one batch of token sequences step by step with the KV cache."""

    def __init__(self, session: DecoderSession, config: GenerationConfig):
        self.session = session
        self.config = config
        self.timing = Timing()
        self.sequences: np.ndarray | None = None  # int64 [batch, prompt + new], left-padded
        self.finish_reasons: list[str | None] = []  # per row; None while running
        self._cache: KVCache | None = None
        self._logits: np.ndarray | None = None  # [batch, vocab]: scores for the next choice
        self._pending: np.ndarray | None = None  # [batch]: chosen, not yet run through the model
        self._prompt_length = 0
        self._budget = 0
        self._eos = np.array(config.eos_token_ids, np.int64)
        pad = config.pad_token_id if config.pad_token_id is not None else (config.eos_token_ids or (0,))[0]
        self._pad = np.int64(pad)

    def append_tokens(self, ids: Sequence[Sequence[int]] | Sequence[int]) -> None:
        """Run prompt tokens through the model: one list per row, or a single list for one row.

        Rows of different lengths are left-padded. Must come before generate_next_token.
        """
        if self._cache is not None:
            raise RuntimeError("append_tokens after generation started is not supported")
        rows = [list(ids)] if len(ids) and np.ndim(ids[0]) == 0 else [list(row) for row in ids]
        if not rows or any(len(row) == 0 for row in rows):
            raise UsageError("a prompt has no tokens: give at least one token per row")
        vocab = self.session.info.vocab_size
        if any(not 0 <= int(t) < vocab for row in rows for t in row):
            raise UsageError(f"a token id is outside the vocabulary [0, {vocab})")
        width, n_positions = max(map(len, rows)), self.session.info.n_positions
        if width > n_positions:
            raise UsageError(
                f"the prompt is {width} tokens but the model's context (n_positions) is {n_positions}: shorten the prompt"
            )
        start = time.perf_counter()
        input_ids = np.full((len(rows), width), self._pad, np.int64)  # [batch, width]
        new_mask = np.zeros((len(rows), width), np.int64)  # [batch, width]
        for r, row in enumerate(rows):
            input_ids[r, width - len(row) :] = row
            new_mask[r, width - len(row) :] = 1
        self._cache = KVCache(self.session.empty_past(len(rows)))
        self._logits = self._forward(input_ids, new_mask)
        self.sequences = input_ids
        self.finish_reasons = [None] * len(rows)
        self._prompt_length = width
        self._budget = self.config.new_token_budget(width)
        if self._budget == 0:
            self.finish_reasons = [LENGTH] * len(rows)
        self.timing.prefill_s += time.perf_counter() - start

    def _forward(self, input_ids: np.ndarray, new_mask: np.ndarray) -> np.ndarray:
        """Run new tokens [batch, seq]; return the last position's logits [batch, vocab]."""
        return run_step(self.session, self._cache, input_ids, new_mask)[:, -1, :]

    def generate_next_token(self) -> np.ndarray:
        """Choose one token per row (pad for rows already finished) and return them [batch]."""
        if self._cache is None:
            raise RuntimeError("call append_tokens before generate_next_token")
        if self.is_done():
            raise RuntimeError("generation is done: check is_done() before generate_next_token")
        start = time.perf_counter()
        if self._pending is not None:
            self._logits = self._forward(self._pending[:, None], np.ones((len(self._pending), 1), np.int64))
        running = np.array([reason is None for reason in self.finish_reasons])  # [batch]
        tokens = np.where(running, search.greedy(self._logits), self._pad)  # [batch]
        self.sequences = np.concatenate([self.sequences, tokens[:, None]], axis=1)
        self.timing.new_tokens += 1
        self._update_finished(tokens, running)
        self._pending = tokens
        self.timing.decode_s += time.perf_counter() - start
        return tokens

    def _update_finished(self, tokens: np.ndarray, running: np.ndarray) -> None:
        hit_eos = running & np.isin(tokens, self._eos)
        out_of_context = self._cache.length >= self.session.info.n_positions  # no slot left to feed a token
        for r in np.flatnonzero(running):
            if hit_eos[r]:
                self.finish_reasons[r] = EOS
            elif self.timing.new_tokens >= self._budget:
                self.finish_reasons[r] = LENGTH
            elif out_of_context:
                self.finish_reasons[r] = CONTEXT

    def is_done(self) -> bool:
        """True once every row has stopped (eos, token budget, or context full)."""
        return self._cache is not None and all(reason is not None for reason in self.finish_reasons)

    def get_next_tokens(self) -> np.ndarray:
        """The tokens chosen by the last generate_next_token [batch]."""
        return self.sequences[:, -1]

    def generated_ids(self, row: int = 0) -> list[int]:
        """Row `row`'s new token ids, up to and including its eos, without trailing padding."""
        new = self.sequences[row, self._prompt_length :].tolist()
        if self.finish_reasons[row] == EOS:
            hits = np.flatnonzero(np.isin(new, self._eos))
            new = new[: int(hits[0]) + 1]
        return new
