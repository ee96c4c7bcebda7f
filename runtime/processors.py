"""Logits processors: pure functions that reshape next-token scores before a
token is chosen, with Hugging Face's semantics, applied in the order its
`generate` applies them (`process`).

Each takes scores [rows, vocab] and what it needs of the tokens so far, and
returns new scores; a banned token gets -inf. Nothing here keeps state or
touches the session.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

NEG_INF = np.float32(-np.inf)


@dataclass(frozen=True)
class History:
    """The tokens the processors may look at, per row."""

    tokens: Sequence[np.ndarray]  # per row: prompt + generated ids, left padding removed
    new_tokens: int  # tokens generated so far (the same for every row)
    length: int  # prompt + generated length with padding, as HF's input_ids.shape[-1]

    def generated(self, row: int) -> np.ndarray:
        """Row `row`'s generated ids."""
        return self.tokens[row][len(self.tokens[row]) - self.new_tokens :]


def repetition_penalty(scores: np.ndarray, history: History, penalty: float) -> np.ndarray:
    """CTRL's penalty on every token already in the row (prompt included):
    negative scores are multiplied by `penalty`, positive ones divided."""
    out = scores.copy()
    for row, tokens in enumerate(history.tokens):
        seen = np.unique(tokens)
        values = out[row, seen]
        out[row, seen] = np.where(values < 0, values * penalty, values / penalty)
    return out


def presence_frequency_penalty(scores: np.ndarray, history: History, presence: float, frequency: float) -> np.ndarray:
    """OpenAI's penalties (llama.cpp has them too; HF does not): subtract `presence`
    once from every token generated so far and `frequency` per time it was generated.
    The prompt does not count."""
    out = scores.copy()
    for row in range(out.shape[0]):
        ids, counts = np.unique(history.generated(row), return_counts=True)
        out[row, ids] -= np.float32(presence) + np.float32(frequency) * counts.astype(np.float32)
    return out


def banned_ngram_tokens(tokens: np.ndarray, n: int) -> np.ndarray:
    """Tokens that would repeat an n-gram of `tokens`: those that followed an earlier
    occurrence of the last n-1 tokens."""
    if len(tokens) < n:  # not one whole n-gram yet
        return np.empty(0, np.int64)
    if n == 1:
        return np.unique(tokens)
    windows = sliding_window_view(tokens[:-1], n - 1)  # [len - n + 1, n - 1]: every earlier (n-1)-gram
    follows = np.all(windows == tokens[len(tokens) - n + 1 :], axis=1)  # [len - n + 1]
    return tokens[np.flatnonzero(follows) + n - 1]


def no_repeat_ngram(scores: np.ndarray, history: History, n: int) -> np.ndarray:
    """Ban any token that would make an n-gram appear twice in the row (prompt included)."""
    out = scores.copy()
    for row, tokens in enumerate(history.tokens):
        out[row, banned_ngram_tokens(tokens, n)] = NEG_INF
    return out


def bad_words(scores: np.ndarray, history: History, singles: np.ndarray, longer: tuple[tuple[int, ...], ...]) -> np.ndarray:
    """Ban the one-token bad sequences' ids [n] (all at once, whatever their number), and the last token
    of each longer bad sequence when the row ends with the rest of it."""
    out = scores.copy()
    out[:, singles] = NEG_INF
    for row, tokens in enumerate(history.tokens if longer else ()):
        for sequence in longer:
            prefix = sequence[:-1]
            if len(tokens) >= len(prefix) and tuple(tokens[len(tokens) - len(prefix) :]) == prefix:
                out[row, sequence[-1]] = NEG_INF
    return out


def sequence_bias(scores: np.ndarray, history: History, singles: tuple[np.ndarray, np.ndarray], longer: tuple[tuple[tuple[int, ...], float], ...]) -> np.ndarray:
    """Add each one-token sequence's bias (ids [n], biases [n], all at once) and each longer sequence's
    bias to its last token when the row ends with the rest of it: HF's SequenceBiasLogitsProcessor,
    and OpenAI's logit_bias."""
    out = scores.copy()
    np.add.at(out, (slice(None), singles[0]), singles[1])
    for row, tokens in enumerate(history.tokens if longer else ()):
        for sequence, bias in longer:
            prefix = sequence[:-1]
            if len(tokens) >= len(prefix) and tuple(tokens[len(tokens) - len(prefix) :]) == prefix:
                out[row, sequence[-1]] += np.float32(bias)
    return out


def min_length(scores: np.ndarray, eos_token_ids: np.ndarray, too_short: bool) -> np.ndarray:
    """Ban eos (ids [n_eos]) while the sequence is still too short."""
    if not too_short or not len(eos_token_ids):
        return scores
    out = scores.copy()
    out[:, eos_token_ids] = NEG_INF
    return out


def chain(config) -> list:
    """The logits processors the config asks for, in HF generate's order (OpenAI's
    penalties right after HF's repetition penalty): functions (scores, history) -> scores."""
    steps = []
    eos = np.array(config.eos_token_ids, np.int64)  # [n_eos]
    if config.sequence_bias:  # first, as in HF's generate
        one = [(seq[0], bias) for seq, bias in config.sequence_bias if len(seq) == 1]
        biases = (np.array([t for t, _ in one], np.int64), np.array([b for _, b in one], np.float32))  # [n], [n]
        longer_biases = tuple((seq, bias) for seq, bias in config.sequence_bias if len(seq) > 1)
        steps.append(lambda s, h: sequence_bias(s, h, biases, longer_biases))
    if config.repetition_penalty != 1.0:
        steps.append(lambda s, h: repetition_penalty(s, h, config.repetition_penalty))
    if config.presence_penalty or config.frequency_penalty:
        steps.append(lambda s, h: presence_frequency_penalty(s, h, config.presence_penalty, config.frequency_penalty))
    if config.no_repeat_ngram_size:
        steps.append(lambda s, h: no_repeat_ngram(s, h, config.no_repeat_ngram_size))
    if config.bad_words_ids:
        # As HF does, a bad "word" that is just eos is ignored: it would forbid stopping.
        banned = np.array([b[0] for b in config.bad_words_ids if len(b) == 1 and b[0] not in config.eos_token_ids], np.int64)  # [n]
        longer = tuple(b for b in config.bad_words_ids if len(b) > 1)
        steps.append(lambda s, h: bad_words(s, h, banned, longer))
    if config.min_length:
        steps.append(lambda s, h: min_length(s, eos, h.length < config.min_length))
    if config.min_new_tokens:
        steps.append(lambda s, h: min_length(s, eos, h.new_tokens < config.min_new_tokens))
    return steps


def apply(steps: list, scores: np.ndarray, history: History) -> np.ndarray:
    """Run a chain of processors over scores [rows, vocab]."""
    for step in steps:
        scores = step(scores, history)
    return scores


def process(scores: np.ndarray, history: History, config) -> np.ndarray:
    """Every logits processor the config asks for, in order."""
    return apply(chain(config), scores, history)
