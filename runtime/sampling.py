"""Choosing tokens from processed scores, and reporting log-probabilities.

Stateless: randomness comes in as a numpy Generator, so a seed reproduces a run
on any platform. Scores in, token ids out.
"""

from __future__ import annotations

import numpy as np

from .errors import UsageError
from .warpers import Candidates, log_softmax, softmax


def greedy(scores: np.ndarray) -> np.ndarray:
    """The highest-scoring token per row: scores [rows, vocab] -> ids [rows].

    np.argmax takes the first maximum on ties, as torch.argmax does.
    """
    return scores.argmax(axis=-1).astype(np.int64, copy=False)  # [rows]


def sample_rows(rows: list[Candidates], rng: np.random.Generator) -> np.ndarray:
    """One token per row drawn from softmax over that row's candidates (ids, scores) -> ids [rows].

    One uniform number per row, by inverse CDF, in row order: the seed decides every draw.
    """
    uniforms = rng.random(len(rows))  # [rows]
    tokens = np.empty(len(rows), np.int64)  # [rows]
    for r, ((ids, values), u) in enumerate(zip(rows, uniforms)):
        if not len(ids):
            raise UsageError("every token is banned at this step (bad_words_ids, min_new_tokens, logit_bias of -inf): ban fewer tokens")
        cdf = np.cumsum(softmax(values.astype(np.float64)))
        tokens[r] = ids[min(int(np.searchsorted(cdf, u * cdf[-1], side="right")), len(ids) - 1)]
    return tokens


def sample(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One token per row drawn from softmax(scores): scores [rows, vocab] -> ids [rows].
    Only finite scores can be drawn."""
    rows = []
    for row in scores:
        ids = np.flatnonzero(np.isfinite(row))
        rows.append((ids, row[ids]))
    return sample_rows(rows, rng)


def logprobs(logits: np.ndarray, chosen: np.ndarray, top_n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The model's own log-probabilities (raw logits, before any processor or warper):
    of each row's chosen token [rows], and the top_n tokens' ids and log-probabilities [rows, top_n],
    most likely first."""
    logp = log_softmax(logits.astype(np.float32))  # [rows, vocab]
    chosen_logp = logp[np.arange(len(chosen)), chosen]  # [rows]
    return (chosen_logp, *top_logprobs(logp, top_n))


def top_logprobs(logp: np.ndarray, top_n: int) -> tuple[np.ndarray, np.ndarray]:
    """The top_n tokens of log-probabilities [rows, vocab]: ids and values [rows, top_n], most likely first."""
    if top_n == 0:
        return np.empty((len(logp), 0), np.int64), np.empty((len(logp), 0), np.float32)
    top = np.argpartition(logp, -top_n, axis=-1)[:, -top_n:]  # [rows, top_n], unordered
    order = np.argsort(-np.take_along_axis(logp, top, axis=-1), axis=-1, kind="stable")
    top_ids = np.take_along_axis(top, order, axis=-1)  # [rows, top_n]
    return top_ids, np.take_along_axis(logp, top_ids, axis=-1)
