"""Beam search and beam sampling on the step protocol, a numpy port of
transformers' vectorised `_beam_search` (4.57), so token ids and sequence
scores equal `generate(num_beams=...)`:

- each step keeps K = max(2, 1 + n_eos) * num_beams continuations of all beams
  by accumulated log-probability (after the logits processors): the top K, or
  with do_sample (beam sampling) K drawn without replacement from the softmax
  of the accumulated scores after the warpers, in the order drawn, as
  `torch.multinomial` does (here by the Gumbel-top-k trick);
- a continuation that ends (eos, max length, or a stop string in its text)
  among the first num_beams joins the finished hypotheses with score
  sum(logprobs) / new_length ** length_penalty;
- the best num_beams unfinished ones run on, and the KV cache follows them;
- `early_stopping` decides when no running beam can beat the finished ones.

With `logprobs`, each position also records its token's log-probability under the
model (raw logits) and the top alternatives; the records follow the beams.
A cancelled search returns the best of its finished and running beams.
"""

from __future__ import annotations

import numpy as np

from . import processors, sampling, warpers
from .config import GenerationConfig
from .errors import UsageError
from .results import CANCELLED, CONTEXT, EOS, LENGTH, STOP, SequenceResult, TokenLogprobs
from .search import Made, Search, StopCheck
from .session import DecoderSession

BIG = np.float32(1e9)  # HF's "-1e9": a score no real hypothesis has


def _top(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values per row, largest first (like torch.topk): [rows, k]."""
    part = np.argpartition(-values, k - 1, axis=1)[:, :k]  # [rows, k], unordered
    order = np.argsort(-np.take_along_axis(values, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def _draw(values: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k indices per row drawn without replacement with probabilities softmax(values), in the order
    drawn: [rows, k]. Gumbel-top-k gives that order's exact distribution. Entries at -1e9 or below
    (beams not started) have probability 0; if fewer than k remain, the rest follow by value."""
    out = np.empty((len(values), k), np.int64)  # [rows, k]
    for b, row in enumerate(values):
        live = np.flatnonzero(row > -BIG / 2)
        keys = -(row[live].astype(np.float64) + rng.gumbel(size=len(live)))  # ascending = drawn first
        if len(live) > k:  # only the first k draws matter: no sort of the whole vocabulary
            first = np.argpartition(keys, k - 1)[:k]
            order = live[first[np.argsort(keys[first], kind="stable")]]
        else:
            order = live[np.argsort(keys, kind="stable")]
        if len(order) < k:  # torch.multinomial refuses this; we fill with the impossible ones
            rest = np.setdiff1d(np.argsort(-row, kind="stable")[: k + len(live)], order, assume_unique=True)
            order = np.concatenate([order, rest[: k - len(order)]])
        out[b] = order
    return out


def _length_norm(length: int, penalty: float) -> np.float32:
    """length ** length_penalty, HF's divisor of a beam's summed logprobs; an absurd penalty
    (1e16) gives inf or 0 here, where Python's int ** float raises OverflowError."""
    with np.errstate(over="ignore", divide="ignore"):
        return np.float32(np.float64(length) ** penalty)


def _gather(array: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """array [batch, beams, ...] gathered along beams by indices [batch, k]."""
    return np.take_along_axis(array, indices.reshape(indices.shape + (1,) * (array.ndim - 2)), axis=1)


class BeamSearch(Search):
    """Beam search (or beam sampling, with do_sample) over a batch of prompts, num_beams rows each."""

    streams = False  # beams change until the end

    def __init__(self, session: DecoderSession, config: GenerationConfig, rng: np.random.Generator | None = None, stop: StopCheck | None = None):
        if config.num_beams < 2:
            raise UsageError("BeamSearch needs num_beams >= 2")
        super().__init__(session, config, config.num_beams)
        self.rng = rng if rng is not None else np.random.default_rng()
        self.stop = stop
        self._beams = config.num_beams
        self._eos = np.array(config.eos_token_ids, np.int64)
        self._keep = max(2, 1 + len(self._eos)) * self._beams  # K candidates per prompt each step
        self._processors = processors.chain(config)
        self._top_n = config.logprobs  # None: no per-token log-probabilities
        self._was_cancelled = False
        # Set by _started from the prompts; empty until then.
        self._prompt_length = self._cur_len = self._max_length = 0
        self._capped = False  # the context, not the token budget, limits the length
        self._starts = np.zeros(0, np.int64)  # [batch]: column of each prompt's first real token
        self._running = np.zeros((0, self._beams, 0), np.int64)  # [batch, beams, max_length]: running beams' ids
        self._running_scores = np.zeros((0, self._beams), np.float32)  # [batch, beams]
        self._finished = self._running.copy()  # [batch, beams, max_length]: best finished hypotheses
        self._finished_scores = self._running_scores.copy()  # [batch, beams]
        self._finished_lengths = np.zeros((0, self._beams), np.int64)  # new tokens of each
        self._is_finished = np.zeros((0, self._beams), bool)
        self._running_records: tuple = ()
        self._finished_records: tuple = ()
        self._can_improve = np.zeros((0, 1), bool)  # HF's is_early_stop_heuristic_unsatisfied

    def _started(self) -> None:
        state, beams = self.state, self._beams
        batch, width = len(state.prompts), state.width
        budget_end = width + state.budget
        # The last token is chosen but never fed, so the context allows n_positions + 1 tokens in all.
        self._max_length = min(budget_end, state.info.n_positions + 1)
        self._capped = self._max_length < budget_end
        self._prompt_length = self._cur_len = width
        self._starts = np.array([width - len(p) for p in state.prompts], np.int64)
        running = np.full((batch, beams, self._max_length), self.config.pad, np.int64)  # [batch, beams, max_length]
        running[:, :, :width] = state.tokens[:, :width].reshape(batch, beams, width)
        self._running = running
        self._running_scores = np.zeros((batch, beams), np.float32)
        self._running_scores[:, 1:] = -BIG  # only beam 0 starts, or every beam would pick the same tokens
        self._finished = running.copy()
        self._finished_scores = np.full((batch, beams), -BIG, np.float32)
        self._finished_lengths = np.zeros((batch, beams), np.int64)
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
        self._can_improve = np.ones((batch, 1), bool)
        if width >= self._max_length:
            self._finish()

    def _history(self) -> processors.History:
        batch, beams = self._running.shape[:2]
        tokens = [self._running[b, j, self._starts[b] : self._cur_len] for b in range(batch) for j in range(beams)]
        return processors.History(tokens, self._cur_len - self._prompt_length, self._cur_len)

    def advance(self) -> np.ndarray:
        """Advance every beam by one token; return the running beams' new tokens [batch * beams]."""
        self._check_running()
        batch, beams = self._running.shape[:2]
        cur, vocab, keep = self._cur_len, self.state.logits.shape[-1], self._keep

        logp = raw = warpers.log_softmax(self.state.logits.astype(np.float32))  # [batch * beams, vocab]
        if self._processors:  # (they return new arrays: raw stays the model's own distribution)
            logp = processors.apply(self._processors, logp, self._history())
        if self.constraints is not None:  # each beam's state masks its own row
            logp = self.constraints.apply(logp)
        if self.config.do_sample:  # HF keeps at least 1 + n_eos tokens per beam
            logp = warpers.warp(logp, self.config, min_tokens_to_keep=max(2, 1 + len(self._eos)))
        total = (logp.reshape(batch, beams, vocab) + self._running_scores[:, :, None]).reshape(batch, beams * vocab)

        # c. K continuations over all beams: the best, or drawn
        top = _draw(total, keep, self.rng) if self.config.do_sample else _top(total, keep)  # [batch, K]
        top_logp = np.take_along_axis(total, top, axis=1)  # [batch, K]
        top_beam, top_ids = top // vocab, top % vocab  # [batch, K]
        top_sequences = _gather(self._running, top_beam)  # [batch, K, max_length]
        top_sequences[:, :, cur] = top_ids
        top_records = self._candidate_records(raw, top_beam, top_ids, cur)

        # d. which of them end here
        ends = np.isin(top_ids, self._eos) | (cur + 1 >= self._max_length)  # [batch, K]
        if self.stop is not None:
            for b, k in zip(*np.nonzero(~ends)):
                ends[b, k] = self.stop(top_sequences[b, k, self._prompt_length : cur + 1])

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
        state = self.state
        state.cache.reorder(state.physical_rows(np.arange(batch * beams)), state.physical_rows(rows))
        if self.constraints is not None:  # the states follow their beams, then take the beams' new tokens
            self.constraints.reorder(rows)
            self.constraints.accept(self._running[:, :, cur].reshape(-1))
        self._cur_len = cur = cur + 1
        self._update_can_improve()
        early = self.config.early_stopping
        open_beam = not (self._is_finished.all() and early is True)
        tokens = self._running[:, :, cur - 1].reshape(-1)  # [batch * beams]
        state.push(tokens)
        state.schedule(np.ones(batch * beams, bool))
        if not (self._can_improve.any() and open_beam and not ends.all()):
            self._finish()
        return tokens

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
        scores = top_logp / _length_norm(new_length, self.config.length_penalty)
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
        best_running = self._running_scores[:, :1] / _length_norm(best_length, penalty)  # [batch, 1]
        worst_finished = np.where(self._is_finished, self._finished_scores.min(axis=1, keepdims=True), -BIG)
        self._can_improve &= (best_running > worst_finished).any(axis=-1, keepdims=True)

    def _cancelled(self) -> None:
        self._was_cancelled = True

    def take_made(self) -> list[Made]:
        return []  # beams change until the end: the caller replays the results

    def _reason(self, ids: list[int]) -> str:
        if self._was_cancelled:
            return CANCELLED
        if ids and ids[-1] in self.config.eos_token_ids:
            return EOS
        if self.stop is not None and self.stop(np.array(ids, np.int64)):
            return STOP
        return CONTEXT if self._capped else LENGTH

    def results(self) -> list[list[SequenceResult]]:
        """Per prompt, the best num_return_sequences finished beams, best first. A cancelled search
        also ranks its running beams (scored at their current length) and marks all "cancelled"."""
        self._check_started()
        out = []
        for p in range(len(self.state.prompts)):
            ranked = [(float(self._finished_scores[p, j]), self._finished, self._finished_records, j, int(self._finished_lengths[p, j])) for j in range(self._beams)]
            if self._was_cancelled:
                made = self._cur_len - self._prompt_length
                scores = self._running_scores[p] / _length_norm(max(made, 1), self.config.length_penalty)
                ranked += [(float(scores[j]), self._running, self._running_records, j, made) for j in range(self._beams)]
                ranked.sort(key=lambda r: -r[0])  # stable: finished ones first among equals
            if self._was_cancelled:  # beams that never started (score -1e9) are no result
                ranked = [r for r in ranked if r[0] > -BIG / 2] or ranked[:1]
            sequences = []
            for score, ids_array, records, j, length in ranked[: self.config.num_return_sequences]:
                ids = ids_array[p, j, self._prompt_length : self._prompt_length + length].tolist()
                sequences.append(SequenceResult(ids, "", self._reason(ids), score, self._logprobs(records, p, j, ids)))
            out.append(sequences)
        return out

    def _logprobs(self, records: tuple, prompt: int, j: int, ids: list[int]) -> list[TokenLogprobs] | None:
        if self._top_n is None:
            return None
        logprob, top_ids, top_logp = (a[prompt, j] for a in records)
        start = self._prompt_length
        return [
            TokenLogprobs(token, float(logprob[t]), list(zip(top_ids[t].tolist(), top_logp[t].tolist())))
            for t, token in enumerate(ids, start)
        ]
