"""Sampling warpers: cut the next-token distribution down before sampling, with
Hugging Face's semantics (ties, min_tokens_to_keep), in the order its
`generate` applies them: temperature, top_k, top_p, min_p, typical_p.

Each warper has a dense form, a pure function from scores [rows, vocab] to new
scores with the removed tokens at -inf, and works inside on a row's surviving
candidates only. `warp_rows` chains them in the sparse form the sampler uses:
after top_k only a few dozen candidates are left, so each later step costs
almost nothing, and the vocabulary is read only a handful of times a step.
"""

from __future__ import annotations

import numpy as np

NEG_INF = np.float32(-np.inf)

Candidates = tuple[np.ndarray, np.ndarray]  # a row's surviving (token ids, scores)


def softmax(scores: np.ndarray) -> np.ndarray:
    """Probabilities along the last axis; -inf scores get 0."""
    shifted = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def log_softmax(scores: np.ndarray) -> np.ndarray:
    """Log-probabilities along the last axis, computed stably."""
    shifted = scores - scores.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


# --- per-row rules on candidates: values [n] in, keep mask [n] out -------------------


def _top_k_ids(row: np.ndarray, k: int) -> np.ndarray:
    """Ids of the k highest scores of a row [vocab], and any tied with the k-th."""
    k = min(k, row.shape[-1])
    kth = np.partition(row, -k)[-k]
    return np.flatnonzero(row >= kth)


def _top_p_keep(values: np.ndarray, p: float, min_tokens_to_keep: int) -> np.ndarray:
    """HF's nucleus rule: sort ascending, drop while the cumulative probability is <= 1 - p,
    always keeping the `min_tokens_to_keep` most likely.

    Only the top of the distribution is sorted: the smallest top set holding >= p
    of the mass (tried at growing sizes) decides, and everything below it goes.
    """
    probs = softmax(values.astype(np.float32))  # [n]
    keep = np.zeros(len(values), bool)
    region, below = np.arange(len(values)), np.empty(0, np.int64)
    for size in (256, 4096):
        if size < len(values):
            top = np.argpartition(values, -size)[-size:]
            if probs[top].sum(dtype=np.float64) >= p:
                region, below = top, np.setdiff1d(region, top, assume_unique=True)
                break
    order = region[np.argsort(values[region], kind="stable")]  # ascending by score, as HF sorts
    cumulative = probs[below].sum(dtype=np.float32) + np.cumsum(probs[order])
    remove = cumulative <= 1 - p
    remove[max(len(remove) - min_tokens_to_keep, 0) :] = False
    keep[order[~remove]] = True
    return keep


def _min_p_keep(values: np.ndarray, p: float, min_tokens_to_keep: int) -> np.ndarray:
    """Keep tokens whose probability is at least `p` times the top token's."""
    probs = softmax(values)
    keep = probs >= p * probs.max()
    n = min(min_tokens_to_keep, len(values))
    keep[np.argpartition(-values, n - 1)[:n]] = True  # the most likely always stay
    return keep


def _typical_keep(values: np.ndarray, mass: float, min_tokens_to_keep: int) -> np.ndarray:
    """Locally typical: keep the tokens whose surprise is closest to the entropy until
    they hold `mass` of the probability."""
    logp = log_softmax(values)
    entropy = -np.nansum(logp * np.exp(logp))  # nansum as HF: 0 * -inf terms drop out
    shifted = np.abs(-logp - entropy)
    order = np.argsort(shifted, kind="stable")  # most typical first
    cumulative = np.cumsum(softmax(values[order]))
    last = min(int((cumulative < mass).sum()), len(order) - 1)
    remove = shifted[order] > shifted[order[last]]
    remove[:min_tokens_to_keep] = False
    keep = np.zeros(len(values), bool)
    keep[order[~remove]] = True
    return keep


# --- dense forms: scores [rows, vocab] -> scores [rows, vocab] -----------------------


def _dense(scores: np.ndarray, rows: list[Candidates]) -> np.ndarray:
    out = np.full_like(scores, NEG_INF)  # [rows, vocab]
    for r, (ids, values) in enumerate(rows):
        out[r, ids] = values
    return out


def _each_row(scores: np.ndarray, rule, *args) -> np.ndarray:
    rows = []
    for row in scores:
        ids = np.flatnonzero(row > NEG_INF)
        values = row[ids]
        keep = rule(values, *args)
        rows.append((ids[keep], values[keep]))
    return _dense(scores, rows)


GREEDY_BELOW = 1e-30  # a temperature this small overflows float32 (or rounds to 0): its limit, the top tokens, stands in


def temperature(scores: np.ndarray, value: float) -> np.ndarray:
    """Divide the scores by `value`: < 1 sharpens, > 1 flattens. Below GREEDY_BELOW the division would
    give inf and NaN (an empty answer); the limit as value -> 0 keeps the top-scoring tokens alone."""
    if value < GREEDY_BELOW:
        top = scores.max(axis=-1, keepdims=True)  # [rows, 1]
        return np.where((scores == top) & np.isfinite(scores), np.float32(0), NEG_INF).astype(np.float32)  # [rows, vocab]
    return scores / np.float32(value)


def top_k(scores: np.ndarray, k: int, min_tokens_to_keep: int = 1) -> np.ndarray:
    """Keep the k highest scores (and any tied with the k-th)."""
    k = max(k, min_tokens_to_keep)
    return _dense(scores, [(ids, row[ids]) for row in scores for ids in [_top_k_ids(row, k)]])


def top_p(scores: np.ndarray, p: float, min_tokens_to_keep: int = 1) -> np.ndarray:
    """Nucleus: keep the most likely tokens until their probability reaches `p`."""
    return _each_row(scores, _top_p_keep, p, min_tokens_to_keep)


def min_p(scores: np.ndarray, p: float, min_tokens_to_keep: int = 1) -> np.ndarray:
    """Keep tokens whose probability is at least `p` times the top token's."""
    return _each_row(scores, _min_p_keep, p, min_tokens_to_keep)


def typical_p(scores: np.ndarray, mass: float, min_tokens_to_keep: int = 1) -> np.ndarray:
    """Locally typical sampling: keep the most typical tokens holding `mass` of the probability."""
    return _each_row(scores, _typical_keep, mass, min_tokens_to_keep)


# --- the chain ---------------------------------------------------------------------


def warp_rows(scores: np.ndarray, config, min_tokens_to_keep: int = 1) -> list[Candidates]:
    """Every warper the config asks for, in HF generate's order: each row's surviving
    (token ids, scores)."""
    if config.temperature != 1.0:
        scores = temperature(scores, config.temperature)
    rows = []
    for row in scores:
        if config.top_k:
            ids = _top_k_ids(row, max(config.top_k, min_tokens_to_keep))
        else:
            ids = np.flatnonzero(row > NEG_INF)
        values = row[ids]
        rules = (
            (config.top_p < 1.0, _top_p_keep, config.top_p),
            (config.min_p is not None, _min_p_keep, config.min_p),
            (config.typical_p < 1.0, _typical_keep, config.typical_p),
        )
        for active, rule, value in rules:
            if active:
                keep = rule(values, value, min_tokens_to_keep)
                ids, values = ids[keep], values[keep]
        rows.append((ids, values))
    return rows


def warp(scores: np.ndarray, config, min_tokens_to_keep: int = 1) -> np.ndarray:
    """The dense form of warp_rows: scores [rows, vocab] with every removed token at -inf."""
    return _dense(scores, warp_rows(scores, config, min_tokens_to_keep))
