"""Teacher-forced scoring: the log-probability and perplexity of texts.

Every token after the first is predicted from the tokens before it, as
transformers' `GPT2LMHeadModel(ids, labels=ids).loss` does. A text longer than
the context is scored with the sliding-window recipe of Hugging Face's
"Perplexity of fixed-length models": windows of n_positions tokens start every
`stride` tokens, and each counts only the tokens the previous window did not
reach. The windows of all texts run in left-padded batches, split so that no
session call returns more than LOGITS_BUDGET_BYTES of logits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .errors import UsageError
from .generator import left_pad
from .kv_cache import new_cache
from .session import DecoderSession

if TYPE_CHECKING:
    from .model import Model

# Most float32 logits [batch, seq, vocab] one session call may return: one full
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


def plan_batches(windows: list[Window], vocab_size: int, budget_bytes: int) -> list[list[Window]]:
    """Windows grouped longest first, as many per batch as keep [batch, width, vocab] float32 logits in the budget.

    Sorting by length keeps padding small; a window too long for the budget on
    its own still gets a batch, which run_batch feeds in sequence chunks.
    """
    ordered = sorted(windows, key=lambda w: len(w.ids), reverse=True)
    batches = []
    i = 0
    while i < len(ordered):
        width = len(ordered[i].ids)
        rows = max(1, budget_bytes // (width * vocab_size * _FLOAT32_BYTES))
        batches.append(ordered[i : i + rows])
        i += rows
    return batches


def target_logprobs(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """log softmax(logits)[k, targets[k]] as float64 [k], from logits [k, vocab] and int targets [k].

    Subtracting the row max first keeps exp() from overflowing; the sums run in float64.
    """
    shifted = logits.astype(np.float32) - logits.max(axis=-1, keepdims=True)  # [k, vocab], a fresh array
    picked = shifted[np.arange(len(targets)), targets].astype(np.float64)  # [k]
    np.exp(shifted, out=shifted)  # in place: no second [k, vocab] array
    return picked - np.log(shifted.sum(axis=-1, dtype=np.float64))


def run_batch(session: DecoderSession, batch: list[Window], pad_id: int, budget_bytes: int) -> np.ndarray:
    """Sum of the counted tokens' log-probabilities per window [batch], from one left-padded batch."""
    vocab_size = session.info.vocab_size
    input_ids, new_mask = left_pad([w.ids for w in batch], pad_id, session.info)  # each [batch, width]
    width = input_ids.shape[1]
    # Padded position p predicts the token at p + 1, so row r's counted tokens are
    # predicted from position (padding + first - 1) up to width - 2.
    starts = [width - len(w.ids) + w.first - 1 for w in batch]
    # The last position predicts nothing, so it is never run. A batch whose
    # logits would overflow the budget runs in sequence chunks on the cache.
    step = max(1, budget_bytes // (len(batch) * vocab_size * _FLOAT32_BYTES))
    cache = new_cache(session, len(batch), width)
    sums = np.zeros(len(batch))  # [batch]
    for a in range(0, width - 1, step):
        b = min(a + step, width - 1)
        logits = cache.step(input_ids[:, a:b], new_mask[:, a:b])  # [batch, b - a, vocab]
        for r, start in enumerate(starts):
            lo = max(start, a)
            if lo < b:  # only counted positions: padded ones may hold any values
                sums[r] += target_logprobs(logits[r, lo - a : b - a], input_ids[r, lo + 1 : b + 1]).sum()
    return sums


def perplexity(logprob: float, token_count: int) -> float:
    """exp(-logprob / token_count); inf where that overflows a float."""
    nll = -logprob / token_count
    return math.exp(nll) if nll < 709.0 else math.inf


def score_ids(model: Model, ids_list: list[list[int]], stride: int | None = None) -> list[tuple[int, float]]:
    """(token_count, logprob) per token sequence: the teacher-forced sum of log-probabilities of all but the first token.

    Sequences longer than the context use windows of n_positions tokens every
    `stride` tokens (default n_positions // 2).
    """
    info = model.info
    stride = check_stride(stride, info.n_positions)
    check_ids(ids_list, info.vocab_size)
    pad_id = info.eos_token_id if info.eos_token_id is not None else 0  # masked out: any id in range works
    budget_bytes = LOGITS_BUDGET_BYTES
    logprobs = np.zeros(len(ids_list))  # [sequences]
    counts = [0] * len(ids_list)
    windows = make_windows(ids_list, info.n_positions, stride)
    for batch in plan_batches(windows, info.vocab_size, budget_bytes):
        for w, logprob in zip(batch, run_batch(model.session, batch, pad_id, budget_bytes)):
            logprobs[w.sequence] += logprob
            counts[w.sequence] += w.token_count
    return [(count, float(logprob)) for count, logprob in zip(counts, logprobs)]


def score(model: Model, texts: list[str], stride: int | None = None) -> list[Score]:
    """The teacher-forced Score of each text (see score_ids); the texts run batched."""
    if isinstance(texts, str):
        raise UsageError("score() takes a list of texts: wrap a single text in a list")
    ids_list = [model.tokenizer.encode(text) for text in texts]
    for i, ids in enumerate(ids_list):
        check_length(len(ids), f"text {i} ({texts[i][:30]!r})")
    return [
        Score(text=text, token_count=count, logprob=logprob, perplexity=perplexity(logprob, count))
        for text, (count, logprob) in zip(texts, score_ids(model, ids_list, stride))
    ]
