"""Sampling warpers: pure functions that cut the next-token distribution down
before sampling, with Hugging Face's semantics (ties, min_tokens_to_keep), in
the order its `generate` applies them (`warp`).

Each takes scores [rows, vocab] and returns new scores with the removed tokens
at -inf. They use argpartition and work on the surviving candidates only, never
a full sort of the vocabulary where a partial one will do.
"""

from __future__ import annotations

import numpy as np

NEG_INF = np.float32(-np.inf)


def softmax(scores: np.ndarray) -> np.ndarray:
    """Probabilities along the last axis; -inf scores get 0."""
    shifted = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def log_softmax(scores: np.ndarray) -> np.ndarray:
    """Log-probabilities along the last axis, computed stably."""
    shifted = scores - scores.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def temperature(scores: np.ndarray, value: float) -> np.ndarray:
    """Divide the scores by `value`: < 1 sharpens, > 1 flattens."""
    return scores / np.float32(value)


def top_k(scores: np.ndarray, k: int, min_tokens_to_keep: int = 1) -> np.ndarray:
    """Keep the k highest scores (and any tied with the k-th)."""
    k = min(max(k, min_tokens_to_keep), scores.shape[-1])
    kth = np.partition(scores, -k, axis=-1)[:, -k, None]  # [rows, 1]
    out = np.full_like(scores, NEG_INF)  # [rows, vocab]
    np.copyto(out, scores, where=scores >= kth)  # cheaper than np.where with a scalar here
    return out


def _candidates(scores: np.ndarray, row: int) -> np.ndarray:
    """Indices of the row's finite scores: after top_k only a few, so later warpers stay cheap."""
    return np.flatnonzero(scores[row] > NEG_INF)


def top_p(scores: np.ndarray, p: float, min_tokens_to_keep: int = 1) -> np.ndarray:
    """Nucleus: keep the most likely tokens until their probability reaches `p`.

    HF's rule: sort ascending, drop tokens whose cumulative probability is <= 1 - p,
    always keeping the `min_tokens_to_keep` most likely. Only the top of the
    distribution is sorted: the smallest top set holding >= p of the mass
    (tried at growing sizes) decides, and everything below it is dropped.
    """
    out = scores.copy()
    for row in range(scores.shape[0]):
        ids = _candidates(scores, row)
        values = scores[row, ids].astype(np.float32)  # [candidates]
        probs = softmax(values)
        region, below = np.arange(len(ids)), np.empty(0, np.int64)
        for size in (256, 4096):
            if size < len(ids):
                top = np.argpartition(values, -size)[-size:]
                if probs[top].sum(dtype=np.float64) >= p:
                    region, below = top, np.setdiff1d(region, top, assume_unique=True)
                    break
        order = region[np.argsort(values[region], kind="stable")]  # ascending by score, as HF sorts
        cumulative = probs[below].sum(dtype=np.float32) + np.cumsum(probs[order])
        remove = cumulative <= 1 - p
        remove[max(len(remove) - min_tokens_to_keep, 0) :] = False
        out[row, ids[below]] = NEG_INF
        out[row, ids[order[remove]]] = NEG_INF
    return out


def min_p(scores: np.ndarray, p: float, min_tokens_to_keep: int = 1) -> np.ndarray:
    """Keep tokens whose probability is at least `p` times the top token's."""
    out = scores.copy()
    for row in range(scores.shape[0]):
        ids = _candidates(scores, row)
        probs = softmax(scores[row, ids])
        remove = probs < p * probs.max()
        keep = min(min_tokens_to_keep, len(ids))
        remove[np.argpartition(-scores[row, ids], keep - 1)[:keep]] = False  # the most likely always stay
        out[row, ids[remove]] = NEG_INF
    return out


def typical_p(scores: np.ndarray, mass: float, min_tokens_to_keep: int = 1) -> np.ndarray:
    """Locally typical sampling: keep the tokens whose surprise is closest to the
    entropy until they hold `mass` of the probability."""
    out = scores.copy()
    for row in range(scores.shape[0]):
        ids = _candidates(scores, row)
        logp = log_softmax(scores[row, ids])
        entropy = -np.nansum(logp * np.exp(logp))  # nansum as HF: 0 * -inf terms drop out
        shifted = np.abs(-logp - entropy)
        order = np.argsort(shifted, kind="stable")  # most typical first
        cumulative = np.cumsum(softmax(scores[row, ids[order]]))
        last = min(int((cumulative < mass).sum()), len(order) - 1)
        remove = shifted[order] > shifted[order[last]]
        remove[:min_tokens_to_keep] = False
        out[row, ids[order[remove]]] = NEG_INF
    return out


def warp(scores: np.ndarray, config, min_tokens_to_keep: int = 1) -> np.ndarray:
    """Every warper the config asks for, in HF generate's order."""
    if config.temperature != 1.0:
        scores = temperature(scores, config.temperature)
    if config.top_k:
        scores = top_k(scores, config.top_k, min_tokens_to_keep)
    if config.top_p < 1.0:
        scores = top_p(scores, config.top_p, min_tokens_to_keep)
    if config.min_p is not None:
        scores = min_p(scores, config.min_p, min_tokens_to_keep)
    if config.typical_p < 1.0:
        scores = typical_p(scores, config.typical_p, min_tokens_to_keep)
    return scores
