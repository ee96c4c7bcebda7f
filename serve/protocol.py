"""The request bodies of the OpenAI-compatible API, and how each becomes gpt2onnx settings.

OpenAI's fields keep OpenAI's names and meanings; the rest of gpt2onnx's
settings ride along under their Hugging Face names (`top_k`, `num_beams`, ...).
A field a request leaves out takes the model's generation_config.json, as the
CLI does, except `max_tokens`, which is OpenAI's 16 when the model sets no
`max_new_tokens`. Unknown fields are refused (400), so a typo is never
silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gpt2onnx.runtime import GenerationConfig, UsageError

OPENAI_MAX_TOKENS = 16  # OpenAI's default max_tokens for completions
MAX_LOGPROBS = 20  # top alternatives per token at most (OpenAI: 5 for completions, 20 for chat)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False  # one last chunk with the usage and no choices


class Sampling(BaseModel):
    """Fields both endpoints share: OpenAI's, then Hugging Face's extras."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None  # the served model's id (see GET /v1/models); left out: that model
    temperature: float | None = Field(None, ge=0, le=2)  # 0: greedy search
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=16)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=0)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None  # token id (as a string) -> bias in [-100, 100]
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None  # accepted and ignored
    # Hugging Face's names for the settings OpenAI lacks
    top_k: int | None = Field(None, ge=0)
    min_p: float | None = Field(None, ge=0, le=1)
    typical_p: float | None = Field(None, gt=0, le=1)
    repetition_penalty: float | None = Field(None, gt=0)
    no_repeat_ngram_size: int | None = Field(None, ge=0)
    bad_words_ids: list[list[int]] | None = None
    min_new_tokens: int | None = Field(None, ge=0)
    do_sample: bool | None = None
    num_beams: int | None = Field(None, ge=1, le=16)
    length_penalty: float | None = None
    early_stopping: bool | Literal["never"] | None = None
    context_overflow: Literal["stop", "slide"] | None = None


class CompletionRequest(Sampling):
    """POST /v1/completions."""

    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(None, ge=0)
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)  # top alternatives per token
    echo: bool = False  # the prompt comes back before the completion (with its logprobs)
    best_of: int | None = Field(None, ge=1)  # only best_of == n: gpt2onnx keeps every sequence it makes
    suffix: str | None = None  # refused unless empty: GPT-2 does no insertion


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant"]
    content: str
    name: str | None = None


class ChatRequest(Sampling):
    """POST /v1/chat/completions."""

    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=0)
    max_completion_tokens: int | None = Field(None, ge=0)  # OpenAI's newer name for max_tokens
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    prompt: str


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    tokens: list[int]


@dataclass(frozen=True)
class Job:
    """What the scheduler runs for one request: prompts as ids, settings, seed."""

    prompt_ids: list[list[int]]  # one list per choice group: each prompt, repeated n times for greedy search
    config: GenerationConfig
    seed: int | None
    echo_logprobs: int | None  # with echo and logprobs: top alternatives of each prompt token


def settings(request: Sampling, defaults: GenerationConfig, max_tokens: int | None, logprobs: int | None, stops: tuple[str, ...] = ()) -> dict:
    """The GenerationConfig changes a request asks for, over the model's defaults."""
    changes: dict = {}
    for name in ("top_p", "presence_penalty", "frequency_penalty", "top_k", "min_p", "typical_p", "repetition_penalty",
                 "no_repeat_ngram_size", "min_new_tokens", "do_sample", "num_beams", "length_penalty", "early_stopping", "context_overflow"):
        value = getattr(request, name)
        if value is not None:
            changes[name] = value
    if request.bad_words_ids is not None:
        changes["bad_words_ids"] = request.bad_words_ids
    if request.temperature is not None:
        if request.temperature == 0:  # OpenAI clients mean greedy by it
            changes["do_sample"] = False
        else:
            changes["temperature"] = request.temperature
            changes.setdefault("do_sample", True)
    if max_tokens is not None:
        changes["max_new_tokens"] = max_tokens
    elif defaults.max_new_tokens is None:
        changes["max_new_tokens"] = OPENAI_MAX_TOKENS
    stop = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
    if stop or stops:
        changes["stop_strings"] = tuple(stops) + tuple(stop)
    if request.logit_bias:
        changes["sequence_bias"] = [[[_token_id(key)], _bias(value)] for key, value in request.logit_bias.items()]
    if logprobs is not None:
        changes["logprobs"] = logprobs
    return changes


def choices(config: GenerationConfig, n: int) -> tuple[GenerationConfig, int]:
    """OpenAI's n: sampling and beams return n sequences per prompt; greedy search, which makes
    one, runs each prompt n times instead (OpenAI returns n equal choices then)."""
    if config.num_beams > 1 or config.do_sample:
        return config.update(num_return_sequences=n) if n != config.num_return_sequences else config, 1
    return config, n


def _token_id(key: str) -> int:
    try:
        return int(key)
    except ValueError:
        raise UsageError(f"logit_bias keys must be token ids, got {key!r}") from None


def _bias(value: float) -> float:
    if not -100 <= value <= 100:
        raise UsageError(f"logit_bias values must be in [-100, 100], got {value!r}")
    return value
