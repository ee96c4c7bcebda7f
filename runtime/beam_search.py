"""Beam search with the step API (append_tokens -> generate_next_token ... is_done),
a numpy port of transformers' vectorised `_beam_search` (4.57), so token ids and
sequence scores equal `generate(num_beams=...)`:

- each step keeps the top K = max(2, 1 + n_eos) * num_beams continuations of all
  beams by accumulated log-probability (after the logits processors);
- a continuation that ends (eos or max length) among the top num_beams joins the
  finished hypotheses with score sum(logprobs) / new_length ** length_penalty;
- the best num_beams unfinished ones run on, and the KV cache follows them;
- `early_stopping` decides when no running beam can beat the finished ones.

With `logprobs`, each position also records its token's log-probability under the
model (raw logits) and the top alternatives; the records follow the beams.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from . import processors, sampling, warpers
from .config import GenerationConfig
from .errors import UsageError
from .generator import CONTEXT, EOS, LENGTH, Timing, TokenLogprobs, as_rows, left_pad
from .kv_cache import KVCache, new_cache
from .session import DecoderSession

BIG = np.float32(1e9)  # HF's "-1e9": a score no real hypothesis has


@dataclass(frozen=True)
class Hypothesis:
    """A finished beam."""

    token_ids: list[int]  # generated ids (eos included if it ended on one)
    score: float  # HF's sequences_scores: sum of logprobs / new_length ** length_penalty
    finish_reason: str
    logprobs: list[TokenLogprobs] | None = None  # with config.logprobs: one entry per token


def _top(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values per row, largest first (like torch.topk): [rows, k]."""
    part = np.argpartition(-values, k - 1, axis=1)[:, :k]  # [rows, k], unordered
    order = np.argsort(-np.take_along_axis(values, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def _gather(array: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """array [batch, beams, ...] gathered along beams by indices [batch, k]."""
    return np.take_along_axis(array, indices.reshape(indices.shape + (1,) * (array.ndim - 2)), axis=1)


class BeamSearch:
    """Beam search over a batch of prompts, one token per beam per step."""

    def __init__(self, session: DecoderSession, config: GenerationConfig):
        if config.num_beams < 2:
            raise UsageError("BeamSearch needs num_beams >= 2")
        self.session = session
        self.config = config
        self.timing = Timing()
        self._beams = config.num_beams
        self._eos = np.array(config.eos_token_ids, np.int64)
        self._pad = int(config.pad)
        self._keep = max(2, 1 + len(self._eos)) * self._beams  # K candidates per prompt each step
        self._processors = processors.chain(config)
        self._top_n = config.logprobs  # None: no per-token log-probabilities
        self._cache: KVCache | None = None
        self._done = False

    def append_tokens(self, ids: Sequence[Sequence[int]] | Sequence[int]) -> None:
        """Prefill the prompts (each copied to num_beams rows)."""
        if self._cache is not None:
            raise RuntimeError("append_tokens after generation started is not supported")
        prompts = as_rows(ids)
        rows = [row for row in prompts for _ in range(self._beams)]
        input_ids, new_mask = left_pad(rows, self._pad, self.session.info)
        start = time.perf_counter()
        batch, beams, width = len(prompts), self._beams, input_ids.shape[1]
        budget_end = width + self.config.new_token_budget(width)
        # The last token is chosen but never fed, so the context allows n_positions + 1 tokens in all.
        self._max_length = min(budget_end, self.session.info.n_positions + 1)
        self._capped = self._max_length < budget_end
        self._cache = new_cache(self.session, len(rows), max(self._max_length - 1, width))  # the last token is never fed
        self._logits = self._cache.step(input_ids, new_mask, last_only=True)[:, -1, :]  # [batch * beams, vocab]
        self._prompt_length = width
        self._cur_len = width
        self._starts = (width - new_mask.sum(axis=1)).reshape(batch, beams)[:, 0]  # [batch]
        running = np.full((batch, beams, self._max_length), self._pad, np.int64)  # [batch, beams, max_length]
        running[:, :, :width] = input_ids.reshape(batch, beams, width)
        self._running = running
        self._running_scores = np.zeros((batch, beams), np.float32)  # [batch, beams]
        self._running_scores[:, 1:] = -BIG  # only beam 0 starts, or every beam would pick the same tokens
        self._finished = running.copy()  # [batch, beams, max_length]: best finished hypotheses
        self._finished_scores = np.full((batch, beams), -BIG, np.float32)
        self._finished_lengths = np.zeros((batch, beams), np.int64)  # new tokens of each
        self._is_finished = np.zeros((batch, beams), bool)
        # With logprobs: per position, the token's log-probability [batch, beams, max_length] and
        # the top_n alternatives' ids and log-probabilities [batch, beams, max_length, top_n].
        n, length = self._top_n or 0, self._max_length
        records = (
            np.zeros((batch, beams, length), np.float32),
            np.zeros((batch, beams, length, n), np.int64),
            np.zeros((batch, beams, length, n), np.float32),
        )
        self._running_records = records if self._top_n is not None else ()
        self._finished_records = tuple(a.copy() for a in self._running_records)
        self._can_improve = np.ones((batch, 1), bool)  # HF's is_early_stop_heuristic_unsatisfied
        self._pending: np.ndarray | None = None
        self._done = width >= self._max_length
        self.timing.prefill_s += time.perf_counter() - start

    def _history(self) -> processors.History:
        batch, beams = self._running.shape[:2]
        tokens = [self._running[b, j, self._starts[b] : self._cur_len] for b in range(batch) for j in range(beams)]
        return processors.History(tokens, self._cur_len - self._prompt_length, self._cur_len)

    def generate_next_token(self) -> np.ndarray:
        """Advance every beam by one token; return the running beams' new tokens [batch * beams]."""
        if self._cache is None:
            raise RuntimeError("call append_tokens before generate_next_token")
        if self._done:
            raise RuntimeError("generation is done: check is_done() before generate_next_token")
        start = time.perf_counter()
        if self._pending is not None:
            ones = np.ones((len(self._pending), 1), np.int64)
            self._logits = self._cache.step(self._pending[:, None], ones)[:, -1, :]
        batch, beams = self._running.shape[:2]
        cur, vocab, keep = self._cur_len, self._logits.shape[-1], self._keep

        logp = raw = warpers.log_softmax(self._logits.astype(np.float32))  # [batch * beams, vocab]
        if self._processors:  # (they return new arrays: raw stays the model's own distribution)
            logp = processors.apply(self._processors, logp, self._history())
        total = (logp.reshape(batch, beams, vocab) + self._running_scores[:, :, None]).reshape(batch, beams * vocab)

        # c. the top K continuations over all beams
        top = _top(total, keep)  # [batch, K]
        top_logp = np.take_along_axis(total, top, axis=1)  # [batch, K]
        top_beam, top_ids = top // vocab, top % vocab  # [batch, K]
        top_sequences = _gather(self._running, top_beam)  # [batch, K, max_length]
        top_sequences[:, :, cur] = top_ids
        top_records = self._candidate_records(raw, top_beam, top_ids, cur)

        # d. which of them end here
        ends = np.isin(top_ids, self._eos) | (cur + 1 >= self._max_length)  # [batch, K]

        # e. the best num_beams that don't end run on
        running_logp = top_logp - ends.astype(np.float32) * BIG
        next_idx = _top(running_logp, beams)  # [batch, beams]
        self._running = _gather(top_sequences, next_idx)
        self._running_records = tuple(_gather(a, next_idx) for a in top_records)
        self._running_scores = np.take_along_axis(running_logp, next_idx, axis=1)
        source_beam = np.take_along_axis(top_beam, next_idx, axis=1)  # [batch, beams]

        # f. merge the ones that end among the top num_beams into the finished hypotheses
        self._update_finished(top_sequences, top_logp, ends, top_records)

        # g. the cache follows the surviving beams
        rows = (np.arange(batch)[:, None] * beams + source_beam).reshape(-1)  # [batch * beams]
        self._cache.reorder(rows)
        self._cur_len = cur = cur + 1
        self._update_can_improve()
        early = self.config.early_stopping
        open_beam = not (self._is_finished.all() and early is True)
        self._done = not (self._can_improve.any() and open_beam and not ends.all())
        self._pending = self._running[:, :, cur - 1].reshape(-1)  # [batch * beams]
        self.timing.new_tokens += 1
        self.timing.decode_s += time.perf_counter() - start
        return self._pending

    def _candidate_records(self, raw: np.ndarray, top_beam: np.ndarray, top_ids: np.ndarray, cur: int) -> tuple:
        """The logprob records of the K candidates (their beams' records, position cur filled in)."""
        if self._top_n is None:
            return ()
        rows = np.arange(len(top_beam))[:, None] * self._beams + top_beam  # [batch, K]: each candidate's logits row
        alternatives, values = sampling.top_logprobs(raw, self._top_n)  # [batch * beams, top_n]
        logprob, top_ids_n, top_logp_n = (_gather(a, top_beam) for a in self._running_records)
        logprob[:, :, cur] = raw[rows, top_ids]
        top_ids_n[:, :, cur] = alternatives[rows]
        top_logp_n[:, :, cur] = values[rows]
        return logprob, top_ids_n, top_logp_n

    def _update_finished(self, top_sequences: np.ndarray, top_logp: np.ndarray, ends: np.ndarray, top_records: tuple) -> None:
        beams, keep, new_length = self._beams, self._keep, self._cur_len + 1 - self._prompt_length
        just_finished = ends & (np.arange(keep) < beams)[None, :]  # [batch, K]
        scores = top_logp / (new_length**self.config.length_penalty)
        full = self._is_finished.all(axis=-1, keepdims=True) & (self.config.early_stopping is True)
        scores = scores - full.astype(np.float32) * BIG
        scores = scores - (~self._can_improve).astype(np.float32) * BIG
        scores = scores - (~just_finished).astype(np.float32) * BIG
        merged_scores = np.concatenate([self._finished_scores, scores], axis=1)  # [batch, beams + K]
        best = _top(merged_scores, beams)  # [batch, beams]
        self._finished = _gather(np.concatenate([self._finished, top_sequences], axis=1), best)
        self._finished_scores = np.take_along_axis(merged_scores, best, axis=1)
        lengths = np.concatenate([self._finished_lengths, np.full(top_logp.shape, new_length)], axis=1)
        self._finished_lengths = np.take_along_axis(lengths, best, axis=1)
        self._is_finished = np.take_along_axis(np.concatenate([self._is_finished, just_finished], axis=1), best, axis=1)
        self._finished_records = tuple(_gather(np.concatenate([f, c], axis=1), best) for f, c in zip(self._finished_records, top_records))

    def _update_can_improve(self) -> None:
        """HF's early-stop heuristic: can the best running beam still beat the worst finished one?"""
        penalty, early = self.config.length_penalty, self.config.early_stopping
        if early == "never" and penalty > 0.0:
            best_length = self._max_length - self._prompt_length
        else:
            best_length = self._cur_len - self._prompt_length
        best_running = self._running_scores[:, :1] / (best_length**penalty)  # [batch, 1]
        worst_finished = np.where(self._is_finished, self._finished_scores.min(axis=1, keepdims=True), -BIG)
        self._can_improve &= (best_running > worst_finished).any(axis=-1, keepdims=True)

    def cancel(self) -> None:
        """Stop the search now: the hypotheses finished so far are the result."""
        self._done = True

    def is_done(self) -> bool:
        """True once the search has stopped for every prompt."""
        return self._cache is not None and self._done

    def hypotheses(self, prompt: int) -> list[Hypothesis]:
        """The best num_return_sequences finished beams of prompt `prompt`, best first."""
        out = []
        for j in range(self.config.num_return_sequences):
            length = int(self._finished_lengths[prompt, j])
            ids = self._finished[prompt, j, self._prompt_length : self._prompt_length + length].tolist()
            if ids and ids[-1] in self.config.eos_token_ids:
                reason = EOS
            else:
                reason = CONTEXT if self._capped else LENGTH
            out.append(Hypothesis(ids, float(self._finished_scores[prompt, j]), reason, self._logprobs(prompt, j, ids)))
        return out

    def _logprobs(self, prompt: int, j: int, ids: list[int]) -> list[TokenLogprobs] | None:
        if self._top_n is None:
            return None
        logprob, top_ids, top_logp = (a[prompt, j] for a in self._finished_records)
        start = self._prompt_length
        return [
            TokenLogprobs(token, float(logprob[t]), list(zip(top_ids[t].tolist(), top_logp[t].tolist())))
            for t, token in enumerate(ids, start)
        ]
