"""GenerationConfig: decoding settings with Hugging Face's names, meanings and defaults.

A model's generation_config.json gives its defaults; call arguments override
them, as in `transformers.GenerationConfig` and `model.generate(**kwargs)`.
Three settings are not Hugging Face's: `presence_penalty` and
`frequency_penalty` (OpenAI's and llama.cpp's), and `logprobs`.

Any values in, from code or from a JSON file: the result is a valid config or
a one-line UsageError (a ValueError), never another exception.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .errors import UsageError, short
from .tokenizer import check_unicode

EARLY_STOPPING = (True, False, "never")
CONTEXT_OVERFLOW = ("stop", "slide")


@dataclass(frozen=True)
class GenerationConfig:
    """How to decode. Field names, meanings and defaults are Hugging Face's unless noted."""

    # Length
    max_length: int = 20  # prompt + new tokens; used only when max_new_tokens is None
    max_new_tokens: int | None = None  # new tokens to make at most; overrides max_length
    min_length: int = 0  # eos is banned while prompt + new tokens are fewer
    min_new_tokens: int | None = None  # eos is banned while fewer new tokens were made
    stop_strings: tuple[str, ...] = ()  # stop when the text contains one; the text is cut just before it
    # Strategy
    do_sample: bool = False  # sample from the distribution instead of choosing the most likely token
    num_beams: int = 1  # beams for beam search; 1 means no beam search
    num_return_sequences: int = 1  # sequences returned per prompt (<= num_beams for beam search)
    # Beam search
    length_penalty: float = 1.0  # beam scores are sum(logprobs) / length ** length_penalty
    early_stopping: bool | str = False  # True: stop at num_beams finished; False: heuristic; "never": canonical
    # Sampling warpers (used only with do_sample; with beams too: beam sampling)
    temperature: float = 1.0  # divides the scores: < 1 sharper, > 1 flatter
    top_k: int = 50  # keep the k most likely tokens; 0 disables
    top_p: float = 1.0  # keep the most likely tokens holding this much probability
    min_p: float | None = None  # keep tokens at least this fraction as likely as the top one
    typical_p: float = 1.0  # keep the most typical tokens holding this much probability
    # Logits processors (greedy, sampling and beams)
    repetition_penalty: float = 1.0  # > 1 discourages every token already in the text
    presence_penalty: float = 0.0  # (OpenAI) subtracted once from each token generated so far
    frequency_penalty: float = 0.0  # (OpenAI) subtracted per time a token was generated so far
    no_repeat_ngram_size: int = 0  # no n-gram of this size appears twice; 0 disables
    bad_words_ids: tuple[tuple[int, ...], ...] | None = None  # token sequences that must never be generated
    sequence_bias: tuple[tuple[tuple[int, ...], float], ...] | None = None  # (ids, bias): added to the last id's score when the text ends with the rest
    # Special tokens
    eos_token_id: int | tuple[int, ...] | None = None  # generation stops after any of these
    pad_token_id: int | None = None  # fills finished rows of a batch; eos when unset
    bos_token_id: int | None = None  # the prompt for an empty prompt
    # Output (gpt2onnx)
    logprobs: int | None = None  # report each token's log-probability and this many top alternatives
    # Context (gpt2onnx): when prompt + new tokens fill n_positions, "stop" (finish_reason "context"),
    # or "slide": keep the last 3/4 of the context, run it again as a new prompt and go on
    context_overflow: str = "stop"

    def __post_init__(self) -> None:
        # Lists (JSON's arrays) become tuples, so a config is hashable and can't change.
        sequences = (list, tuple)
        if isinstance(self.eos_token_id, list):
            object.__setattr__(self, "eos_token_id", tuple(self.eos_token_id))
        if isinstance(self.stop_strings, str):
            object.__setattr__(self, "stop_strings", (self.stop_strings,))
        elif self.stop_strings is None or isinstance(self.stop_strings, sequences):
            object.__setattr__(self, "stop_strings", tuple(self.stop_strings or ()))
        else:
            raise UsageError(f"stop_strings must be a list of strings, got {type(self.stop_strings).__name__}")
        if self.bad_words_ids is not None:
            if not isinstance(self.bad_words_ids, sequences) or not all(isinstance(seq, sequences) for seq in self.bad_words_ids):
                raise UsageError("bad_words_ids must be a list of non-empty lists of token ids")
            object.__setattr__(self, "bad_words_ids", tuple(tuple(seq) for seq in self.bad_words_ids))
        if self.sequence_bias is not None:
            object.__setattr__(self, "sequence_bias", _sequence_bias(self.sequence_bias))
        self._validate()

    def _validate(self) -> None:
        def integer(name: str, minimum: int, allow_none: bool = False) -> None:
            value = getattr(self, name)
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise UsageError(f"{name} must be an integer >= {minimum}, got {short(value)}")

        def number(name: str, low: float, high: float, low_open: bool = False, allow_none: bool = False) -> None:
            value = getattr(self, name)
            if value is None and allow_none:
                return
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            try:
                ok = ok and math.isfinite(value)
            except OverflowError:  # an int too big for a float: 10**400 is not a setting
                ok = False
            ok = ok and (value > low if low_open else value >= low) and value <= high
            if not ok:
                bracket = "(" if low_open else "["
                raise UsageError(f"{name} must be in {bracket}{low:g}, {high:g}], got {short(value)}")

        integer("max_length", 1)
        integer("max_new_tokens", 0, allow_none=True)
        integer("min_length", 0)
        integer("min_new_tokens", 0, allow_none=True)
        integer("num_beams", 1)
        integer("num_return_sequences", 1)
        integer("top_k", 0)
        integer("no_repeat_ngram_size", 0)
        integer("logprobs", 0, allow_none=True)
        number("temperature", 0, math.inf, low_open=True)
        number("top_p", 0, 1, low_open=True)
        number("min_p", 0, 1, allow_none=True)
        number("typical_p", 0, 1, low_open=True)
        number("repetition_penalty", 0, math.inf, low_open=True)
        number("presence_penalty", -2, 2)
        number("frequency_penalty", -2, 2)
        number("length_penalty", -math.inf, math.inf)
        if not isinstance(self.early_stopping, (bool, str)) or self.early_stopping not in EARLY_STOPPING:
            raise UsageError(f"early_stopping must be True, False or 'never', got {short(self.early_stopping)}")
        if not isinstance(self.do_sample, bool):
            raise UsageError(f"do_sample must be True or False, got {short(self.do_sample)}")

        def token_id(name: str) -> None:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise UsageError(f"{name} must be a token id (an integer >= 0) or None, got {short(value)}")

        token_id("pad_token_id")
        token_id("bos_token_id")
        eos = self.eos_token_id
        if eos is not None and not (
            isinstance(eos, int) and not isinstance(eos, bool) and eos >= 0
            or isinstance(eos, tuple) and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in eos)
        ):
            raise UsageError(f"eos_token_id must be a token id, a list of token ids or None, got {short(eos)}")
        if any(not isinstance(s, str) or not s for s in self.stop_strings):
            raise UsageError("stop_strings must be non-empty strings")
        for s in self.stop_strings:
            check_unicode(s, f"stop string {short(s)}")
        if self.bad_words_ids is not None and any(
            not seq or any(isinstance(t, bool) or not isinstance(t, int) or t < 0 for t in seq) for seq in self.bad_words_ids
        ):
            raise UsageError("bad_words_ids must be a list of non-empty lists of token ids")
        for _, bias in self.sequence_bias or ():
            if isinstance(bias, bool) or not isinstance(bias, (int, float)) or not math.isfinite(bias):
                raise UsageError(f"sequence_bias values must be finite numbers, got {short(bias)}")
        if self.num_beams == 1 and not self.do_sample and self.num_return_sequences > 1:
            raise UsageError("num_return_sequences > 1 needs do_sample=True or num_beams > 1: greedy search gives one sequence")
        if self.num_beams > 1 and self.num_return_sequences > self.num_beams:
            raise UsageError(f"num_return_sequences ({self.num_return_sequences}) must be <= num_beams ({self.num_beams})")
        if self.context_overflow not in CONTEXT_OVERFLOW:
            raise UsageError(f"context_overflow must be 'stop' or 'slide', got {short(self.context_overflow)}")
        if self.num_beams > 1 and self.context_overflow == "slide":
            raise UsageError("context_overflow='slide' is not supported with beam search: use num_beams=1")

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        """The stop tokens as a tuple (possibly empty)."""
        if self.eos_token_id is None:
            return ()
        return self.eos_token_id if isinstance(self.eos_token_id, tuple) else (self.eos_token_id,)

    @property
    def pad(self) -> int:
        """The token that fills finished rows: pad_token_id, else the first eos, else 0."""
        return self.pad_token_id if self.pad_token_id is not None else (self.eos_token_ids or (0,))[0]

    def new_token_budget(self, prompt_length: int) -> int:
        """How many new tokens max_new_tokens / max_length allow after a prompt of this length."""
        if self.max_new_tokens is not None:
            return self.max_new_tokens
        return max(self.max_length - prompt_length, 0)

    def update(self, **changes) -> GenerationConfig:
        """A copy with these fields changed; an unknown name is a clear error."""
        if not changes:
            return self  # already valid: validate once
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise UsageError(f"unknown generation setting {unknown[0]!r}: known settings are {', '.join(sorted(known))}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, data: dict) -> GenerationConfig:
        """From a generation_config.json: keeps the fields this runtime knows and ignores the rest."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _sequence_bias(value) -> tuple[tuple[tuple[int, ...], float], ...]:
    """HF's sequence_bias as (ids, bias) pairs: from a dict {(ids...): bias} (Python) or a list of
    [ids, bias] pairs (JSON)."""
    pairs = value.items() if isinstance(value, dict) else value
    try:
        out = tuple((tuple(ids), bias) for ids, bias in pairs)
    except (TypeError, ValueError):
        raise UsageError("sequence_bias must be a list of [token ids, bias] pairs") from None
    if any(not ids or any(isinstance(t, bool) or not isinstance(t, int) or t < 0 for t in ids) for ids, _ in out):
        raise UsageError("sequence_bias must be a list of [token ids, bias] pairs: each a non-empty list of token ids")
    return out
