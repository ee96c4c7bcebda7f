"""GenerationConfig: decoding settings with Hugging Face's names, meanings and defaults.

Each field's type, bounds, default and meaning are defined once, in
runtime/settings.py (SETTINGS); the checks here use them. A model's
generation_config.json gives its defaults; call arguments override
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
from .settings import SETTINGS
from .tokenizer import check_unicode


def _default(name: str):
    return SETTINGS[name].default


@dataclass(frozen=True)
class GenerationConfig:
    """How to decode. Each field's meaning, bounds and default (Hugging Face's unless noted)
    are its Setting in runtime/settings.py."""

    # Length
    max_length: int = _default("max_length")
    max_new_tokens: int | None = _default("max_new_tokens")
    min_length: int = _default("min_length")
    min_new_tokens: int | None = _default("min_new_tokens")
    stop_strings: tuple[str, ...] = _default("stop_strings")  # a list (JSON's array) or one string becomes a tuple
    # Strategy
    do_sample: bool = _default("do_sample")
    num_beams: int = _default("num_beams")
    num_return_sequences: int = _default("num_return_sequences")
    # Beam search
    length_penalty: float = _default("length_penalty")
    early_stopping: bool | str = _default("early_stopping")
    # Sampling warpers (used only with do_sample; with beams too: beam sampling)
    temperature: float = _default("temperature")
    top_k: int = _default("top_k")
    top_p: float = _default("top_p")
    min_p: float | None = _default("min_p")
    typical_p: float = _default("typical_p")
    # Logits processors (greedy, sampling and beams)
    repetition_penalty: float = _default("repetition_penalty")
    presence_penalty: float = _default("presence_penalty")  # OpenAI's
    frequency_penalty: float = _default("frequency_penalty")  # OpenAI's
    no_repeat_ngram_size: int = _default("no_repeat_ngram_size")
    bad_words_ids: tuple[tuple[int, ...], ...] | None = _default("bad_words_ids")
    sequence_bias: tuple[tuple[tuple[int, ...], float], ...] | None = _default("sequence_bias")  # (ids, bias) pairs
    # Special tokens
    eos_token_id: int | tuple[int, ...] | None = _default("eos_token_id")
    pad_token_id: int | None = _default("pad_token_id")
    bos_token_id: int | None = _default("bos_token_id")
    # Output (gpt2onnx)
    logprobs: int | None = _default("logprobs")
    # Context (gpt2onnx): "slide" keeps the last 3/4 of the context, runs it again as a new prompt and goes on
    context_overflow: str = _default("context_overflow")

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
        # Numbers and choices by the table's bounds (integers first, as always); the rest below.
        config = [s for s in SETTINGS.values() if s.config]
        for setting in [s for s in config if s.type is int] + [s for s in config if s.type is float]:
            value = getattr(self, setting.name)
            if value is None and setting.optional:
                continue
            kind = int if setting.type is int else (int, float)
            if isinstance(value, bool) or not isinstance(value, kind) or not setting.allows(value):
                raise UsageError(f"{setting.name} must be {setting.describe()}, got {short(value)}")
        for setting in config:
            value = getattr(self, setting.name)
            # Exactly one of the values: 1 == True, but 1 is not a do_sample
            if setting.choices and not any(type(value) is type(c) and value == c for c in setting.choices):
                names = [repr(c) for c in setting.choices]
                raise UsageError(f"{setting.name} must be {', '.join(names[:-1])} or {names[-1]}, got {short(value)}")

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
            raise UsageError(f"num_return_sequences ({short(self.num_return_sequences)}) must be <= num_beams ({short(self.num_beams)})")
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
