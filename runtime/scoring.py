"""Teacher-forced scoring: the log-probability and perplexity of texts.

Every token after the first is predicted from the tokens before it, as
transformers' `GPT2LMHeadModel(ids, labels=ids).loss` does. A text longer than
the context is scored with the sliding-window recipe of Hugging Face's
"Perplexity of fixed-length models": windows of n_positions tokens start every
`stride` tokens, and each counts only the tokens the previous window did not
reach. Each window runs in one KV cache row, in chunks so that no session call
returns more than LOGITS_BUDGET_BYTES of logits. It works on token ids and a
session; Model.score does the tokenizing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from . import sampling
from .decode_state import check_prompts
from .errors import UsageError
from .kv_cache import new_cache
from .results import TokenLogprobs
from .session import DecoderSession

# Most float32 logits [seq, vocab] one session call may return: one full
# 1024-token GPT-2 window (206 MB) fits, two don't.
LOGITS_BUDGET_BYTES = 256 * 2**20
_FLOAT32_BYTES = 4


@dataclass(frozen=True)
class Score:
    """Teacher-forced score of one text."""

    text: str
    token_count: int  # tokens predicted (all but the first)
    logprob: float  # sum of their log-probabilities (natural log)
    perplexity: float  # exp(-logprob / token_count)
    token_logprobs: tuple[float, ...] = ()  # each predicted token's log-probability, in order


@dataclass(frozen=True)
class Window:
    """One run of the model over part of a sequence, and which of its tokens count."""

    sequence: int  # index of the sequence in the caller's list
    ids: list[int]  # ids[begin:end] of that sequence
    first: int  # first counted position in the window; >= 1, as position 0 has no prediction

    @property
    def token_count(self) -> int:
        return len(self.ids) - self.first


def check_stride(stride: int | None, n_positions: int) -> int:
    """The stride to use: n_positions // 2 by default, else 1 <= stride <= n_positions."""
    if stride is None:
        return max(1, n_positions // 2)
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or not 1 <= stride <= n_positions:
        raise UsageError(f"stride must be a whole number from 1 to the model's context ({n_positions}), got {stride!r}")
    return int(stride)


def check_length(length: int, what: str) -> None:
    """Refuse a sequence with nothing to predict."""
    if length < 2:
        tokens = "1 token" if length == 1 else f"{length} tokens"
        raise UsageError(f"{what} has {tokens}: scoring needs at least two tokens (the first is never predicted)")


def check_ids(ids_list: Sequence[Sequence[int]], vocab_size: int) -> None:
    """Every sequence has two tokens or more, all inside the vocabulary."""
    for i, ids in enumerate(ids_list):
        check_length(len(ids), f"sequence {i}")
        if any(not 0 <= int(t) < vocab_size for t in ids):
            raise UsageError(f"sequence {i} has a token id outside the vocabulary [0, {vocab_size})")


def window_spans(n: int, max_length: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, first) per window over n tokens: run ids[begin:end], count window positions first .. end-begin-1.

    Hugging Face's recipe: the window counts its last trg_len = end - prev_end
    positions, those no earlier window counted, but never its position 0.
    """
    spans = []
    prev_end = 0
    for begin in range(0, n, stride):
        end = min(begin + max_length, n)
        trg_len = end - prev_end
        spans.append((begin, end, max(1, end - begin - trg_len)))
        prev_end = end
        if end == n:
            break
    return spans


def make_windows(ids_list: Sequence[Sequence[int]], max_length: int, stride: int) -> list[Window]:
    """The windows of every sequence, in order."""
    return [
        Window(s, [int(t) for t in ids[begin:end]], first)
        for s, ids in enumerate(ids_list)
        for begin, end, first in window_spans(len(ids), max_length, stride)
    ]


def target_logprobs(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """log softmax(logits)[k, targets[k]] as float64 [k], from logits [k, vocab] and int targets [k].

    Subtracting the row max first keeps exp() from overflowing; the sums run in float64.
    """
    shifted = logits.astype(np.float32) - logits.max(axis=-1, keepdims=True)  # [k, vocab], a fresh array
    picked = shifted[np.arange(len(targets)), targets].astype(np.float64)  # [k]
    np.exp(shifted, out=shifted)  # in place: no second [k, vocab] array
    return picked - np.log(shifted.sum(axis=-1, dtype=np.float64))


def chunked_logits(cache, ids: list[int], start: int, budget_bytes: int):
    """Teacher-forced logits of `ids` in row 0 of `cache`, from position `start` on, in chunks that keep
    under `budget_bytes`: (a, b, logits [b - a, vocab]), where row k predicts ids[a + 1 + k].
    The last position predicts nothing and never runs."""
    step = max(1, budget_bytes // (cache.session.info.vocab_size * _FLOAT32_BYTES))  # positions per call
    for a in range(start, len(ids) - 1, step):
        b = min(a + step, len(ids) - 1)
        yield a, b, cache.prefill(0, ids[a:b], start=a, last_only=False)


def window_logprobs(cache, window: Window, budget_bytes: int) -> np.ndarray:
    """The window's counted tokens' log-probabilities, float64 [token_count], run in row 0 of `cache`:
    they are predicted from positions first - 1 .. len - 2."""
    ids, parts = window.ids, []
    for a, b, logits in chunked_logits(cache, ids, 0, budget_bytes):
        lo = max(window.first - 1, a)
        if lo < b:
            parts.append(target_logprobs(logits[lo - a :], np.asarray(ids[lo + 1 : b + 1])))  # [b - lo]
    return np.concatenate(parts) if parts else np.zeros(0)


def prompt_logprobs(session: DecoderSession, ids: list[int], top_n: int) -> list[TokenLogprobs]:
    """Each token after the first, given the ones before it: its log-probability and the top_n
    alternatives there (OpenAI's completions with echo and logprobs). The ids fit the context."""
    check_prompts([ids], session.info)
    out = []
    for a, b, logits in chunked_logits(new_cache(session, 1, len(ids)), ids, 0, LOGITS_BUDGET_BYTES):
        chosen, top_ids, top_logp = sampling.logprobs(logits, np.asarray(ids[a + 1 : b + 1]), top_n)
        for k in range(b - a):
            out.append(TokenLogprobs(ids[a + 1 + k], float(chosen[k]), list(zip(top_ids[k].tolist(), top_logp[k].tolist()))))
    return out


def perplexity(logprob: float, token_count: int) -> float:
    """exp(-logprob / token_count); inf where that overflows a float."""
    nll = -logprob / token_count
    return math.exp(nll) if nll < 709.0 else math.inf


def score_tokens(session: DecoderSession, ids_list: list[list[int]], stride: int | None = None) -> list[np.ndarray]:
    """Per token sequence, the teacher-forced log-probability of each token but the first, float64 [len - 1].

    Sequences longer than the context use windows of n_positions tokens every
    `stride` tokens (default n_positions // 2).
    """
    info = session.info
    stride = check_stride(stride, info.n_positions)
    check_ids(ids_list, info.vocab_size)
    parts: list[list[np.ndarray]] = [[] for _ in ids_list]
    windows = make_windows(ids_list, info.n_positions, stride)
    if not windows:
        return []
    cache = new_cache(session, 1, max(len(w.ids) for w in windows))
    for w in windows:
        parts[w.sequence].append(window_logprobs(cache, w, LOGITS_BUDGET_BYTES))
    return [np.concatenate(p) for p in parts]


def score_ids(session: DecoderSession, ids_list: list[list[int]], stride: int | None = None) -> list[tuple[int, float]]:
    """(token_count, logprob) per token sequence: the teacher-forced sum of log-probabilities of all but the first token."""
    return [(len(t), float(t.sum())) for t in score_tokens(session, ids_list, stride)]
