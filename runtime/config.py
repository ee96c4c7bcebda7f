"""GenerationConfig: decoding settings with Hugging Face's names, meanings and defaults.

A model's generation_config.json gives its defaults; call arguments override
them, as in `transformers.GenerationConfig` and `model.generate(**kwargs)`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .errors import UsageError


@dataclass(frozen=True)
class GenerationConfig:
    """How to decode. Field names and defaults are Hugging Face's."""

    max_length: int = 20  # prompt + new tokens; used only when max_new_tokens is None
    max_new_tokens: int | None = None  # new tokens to make at most; overrides max_length
    do_sample: bool = False  # sample from the distribution instead of searching (decoding issue)
    num_beams: int = 1  # beams for beam search; 1 means no beam search (decoding issue)
    temperature: float = 1.0  # divides logits before sampling (used with do_sample)
    top_k: int = 50  # keep the k most likely tokens before sampling; 0 disables (used with do_sample)
    top_p: float = 1.0  # keep the smallest set with this much probability (used with do_sample)
    eos_token_id: int | tuple[int, ...] | None = None  # generation stops after any of these
    pad_token_id: int | None = None  # fills finished rows of a batch; eos when unset
    bos_token_id: int | None = None  # the prompt for an empty prompt

    def __post_init__(self) -> None:
        if isinstance(self.eos_token_id, list):
            object.__setattr__(self, "eos_token_id", tuple(self.eos_token_id))
        self._validate()

    def _validate(self) -> None:
        def positive_int(name: str, value, allow_none: bool = False, minimum: int = 1) -> None:
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise UsageError(f"{name} must be an integer >= {minimum}, got {value!r}")

        positive_int("max_length", self.max_length)
        positive_int("max_new_tokens", self.max_new_tokens, allow_none=True, minimum=0)
        positive_int("num_beams", self.num_beams)
        positive_int("top_k", self.top_k, minimum=0)
        if not isinstance(self.temperature, (int, float)) or not self.temperature > 0:
            raise UsageError(f"temperature must be > 0, got {self.temperature!r}")
        if not isinstance(self.top_p, (int, float)) or not 0 < self.top_p <= 1:
            raise UsageError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if self.do_sample:
            raise UsageError("do_sample=True is not supported yet: this version decodes greedily (do_sample=False)")
        if self.num_beams != 1:
            raise UsageError("num_beams > 1 is not supported yet: this version decodes greedily (num_beams=1)")

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        """The stop tokens as a tuple (possibly empty)."""
        if self.eos_token_id is None:
            return ()
        return self.eos_token_id if isinstance(self.eos_token_id, tuple) else (self.eos_token_id,)

    def new_token_budget(self, prompt_length: int) -> int:
        """How many new tokens max_new_tokens / max_length allow after a prompt of this length."""
        if self.max_new_tokens is not None:
            return self.max_new_tokens
        return max(self.max_length - prompt_length, 0)

    def update(self, **changes) -> GenerationConfig:
        """A copy with these fields changed; an unknown name is a clear error."""
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
