"""The request bodies of the OpenAI-compatible API, and how each becomes gpt2onnx settings.

OpenAI's fields keep OpenAI's names and meanings; the rest of gpt2onnx's
settings ride along under their Hugging Face names (`top_k`, `num_beams`, ...).
A field a request leaves out takes the model's generation_config.json, as the
CLI does, except `max_tokens` when the model sets no `max_new_tokens`: OpenAI's
16 for completions, and what is left of the context for chat (OpenAI's chat
has no cap; vLLM does the same). Unknown fields are refused (400), so a typo is
never silently ignored; what each request may ask for is bounded (MAX_*), so
no request can cost the others more than its share.

Every setting's bounds come from the settings table (runtime/settings.py), the
server's narrower ones included, each with its reason there; so does the
mapping from OpenAI's fields to Hugging Face's settings, which settings() and
choices() carry out.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, StrictBool, StrictInt, StringConstraints

from gpt2onnx.runtime import GenerationConfig, UsageError
from gpt2onnx.runtime.settings import SETTINGS

OPENAI_MAX_TOKENS = 16  # OpenAI's default max_tokens for completions
# What one request may ask for at most: each bounds work or memory that other requests would pay for.
MAX_LOGPROBS = SETTINGS["logprobs"].serve.high  # top alternatives per token
MAX_TOKENS = SETTINGS["max_new_tokens"].serve.high  # new tokens per sequence
MAX_STOPS, MAX_STOP_CHARS = 16, 256  # stop strings, and characters in each (OpenAI allows 4)
MAX_BIASES = 1024  # logit_bias entries
MAX_LONG_BANS, MAX_BAN_IDS = 256, 32  # bad_words_ids of more than one token, and ids in any one

Float = Annotated[float, Strict()]  # a JSON number: true, "1" and the like are refused, not read as 1
Stop = Annotated[str, StringConstraints(min_length=1, max_length=MAX_STOP_CHARS)]
Ids = Annotated[list[StrictInt], Field(min_length=1)]  # token ids: 7.0 is refused too (a float is never quietly an id)


def bounds(name: str) -> dict:
    """pydantic's ge/gt/le/lt for a setting, as the table states it for the server (an infinite end: no bound)."""
    low, high, low_open, high_open = SETTINGS[name].bounds("serve")
    out = {}
    if low is not None and low != -math.inf:
        out["gt" if low_open else "ge"] = low
    if high is not None and high != math.inf:
        out["lt" if high_open else "le"] = high
    return out


class Strict_(BaseModel):
    """Unknown fields are refused (a typo is never silently ignored)."""

    model_config = ConfigDict(extra="forbid")


class StreamOptions(Strict_):
    include_usage: StrictBool = False  # one last chunk with the usage and no choices


class Sampling(Strict_):
    """Fields both endpoints share: OpenAI's, then Hugging Face's extras."""

    model: str | None = None  # the served model's id (see GET /v1/models); left out: that model
    temperature: Float | None = Field(None, **bounds("temperature"))  # 0: greedy search
    top_p: Float | None = Field(None, **bounds("top_p"))
    n: StrictInt = Field(SETTINGS["num_return_sequences"].default, **bounds("num_return_sequences"))
    stop: Stop | Annotated[list[Stop], Field(max_length=MAX_STOPS)] | None = None
    seed: StrictInt | None = Field(None, **bounds("seed"))
    presence_penalty: Float | None = Field(None, **bounds("presence_penalty"))
    frequency_penalty: Float | None = Field(None, **bounds("frequency_penalty"))
    logit_bias: dict[str, Float] | None = Field(None, max_length=MAX_BIASES)  # token id (as a string) -> bias (checked in check_request)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    user: str | None = None  # accepted and ignored
    # Hugging Face's names for the settings OpenAI lacks
    top_k: StrictInt | None = Field(None, **bounds("top_k"))
    min_p: Float | None = Field(None, **bounds("min_p"))
    typical_p: Float | None = Field(None, **bounds("typical_p"))
    repetition_penalty: Float | None = Field(None, **bounds("repetition_penalty"))
    no_repeat_ngram_size: StrictInt | None = Field(None, **bounds("no_repeat_ngram_size"))
    bad_words_ids: list[Ids] | None = None
    min_new_tokens: StrictInt | None = Field(None, **bounds("min_new_tokens"))
    do_sample: StrictBool | None = None
    num_beams: StrictInt | None = Field(None, **bounds("num_beams"))
    length_penalty: Float | None = Field(None, **bounds("length_penalty"))
    early_stopping: StrictBool | Literal["never"] | None = None
    context_overflow: Literal["stop", "slide"] | None = None


class CompletionRequest(Sampling):
    """POST /v1/completions."""

    prompt: str | Annotated[list[str], Field(min_length=1)] | Ids | Annotated[list[Ids], Field(min_length=1)]
    max_tokens: StrictInt | None = Field(None, **bounds("max_new_tokens"))
    logprobs: StrictInt | None = Field(None, **bounds("logprobs"))  # top alternatives per token
    echo: StrictBool = False  # the prompt comes back before the completion (with its logprobs)
    best_of: StrictInt | None = Field(None, ge=1)  # only best_of == n: gpt2onnx keeps every sequence it makes
    suffix: str | None = None  # refused unless empty: GPT-2 does no insertion


class TextPart(Strict_):
    type: Literal["text"]
    text: str


class OtherPart(BaseModel):
    """An image, audio or file part: read only to refuse it in one line."""

    model_config = ConfigDict(extra="allow")
    type: str


class Message(Strict_):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart | OtherPart] | None = None  # None: an assistant turn that said nothing
    name: str | None = None

    def text(self) -> str:
        """The message's text; text parts are joined. Other parts were refused before (check_chat)."""
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content if isinstance(part, TextPart))
        return self.content or ""


class ChatRequest(Sampling):
    """POST /v1/chat/completions. Fields a client sends that ask for nothing this server lacks are
    accepted and ignored (check_chat refuses the rest): tools null or [], tool_choice "none",
    parallel_tool_calls without tools, response_format {"type": "text"}."""

    messages: list[Message] = Field(min_length=1)
    max_tokens: StrictInt | None = Field(None, **bounds("max_new_tokens"))
    max_completion_tokens: StrictInt | None = Field(None, **bounds("max_new_tokens"))  # OpenAI's newer name for max_tokens
    logprobs: StrictBool = False
    top_logprobs: StrictInt | None = Field(None, **bounds("logprobs"))
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: StrictBool | None = None
    response_format: dict[str, Any] | None = None


class TokenizeRequest(Strict_):
    model: str | None = None
    prompt: str


class DetokenizeRequest(Strict_):
    model: str | None = None
    tokens: list[StrictInt]


def check_request(body: Sampling) -> None:
    """What the request models' types can't say: refused in one line (UsageError, 400)."""
    if body.stream_options is not None and not body.stream:
        raise UsageError("stream_options is only allowed with stream: true")
    if body.logit_bias:
        for key, value in body.logit_bias.items():
            if not re.fullmatch(r"[0-9]{1,9}", key):  # int() would also read " 10", "+10" and "١٠" as 10
                raise UsageError(f"logit_bias keys must be token ids written in ASCII digits, got {key!r}")
            if not SETTINGS["sequence_bias"].allows(value, "serve"):
                raise UsageError(f"logit_bias values must be {SETTINGS['sequence_bias'].describe('serve')}, got {value!r}")
    longer = [seq for seq in body.bad_words_ids or () if len(seq) > 1]
    if len(longer) > MAX_LONG_BANS or any(len(seq) > MAX_BAN_IDS for seq in longer):
        raise UsageError(f"bad_words_ids may hold at most {MAX_LONG_BANS} sequences of more than one token, each of at most {MAX_BAN_IDS} ids")
    if isinstance(body, ChatRequest):
        _check_chat(body)


def _check_chat(body: ChatRequest) -> None:
    if body.top_logprobs is not None and not body.logprobs:
        raise UsageError("top_logprobs needs logprobs: true")
    if body.tools or body.tool_choice not in (None, "none"):
        raise UsageError("tools are not supported: GPT-2 can't call functions; leave tools and tool_choice out")
    if body.response_format is not None and body.response_format.get("type") != "text":
        raise UsageError(f"response_format {body.response_format.get('type')!r} is not supported: only {{\"type\": \"text\"}}")
    for message in body.messages:
        for part in message.content if isinstance(message.content, list) else ():
            if isinstance(part, OtherPart):
                raise UsageError(f"{part.type!r} content parts are not supported: GPT-2 reads text only; send text parts")


@dataclass(frozen=True)
class Job:
    """What the scheduler runs for one request: prompts as ids, settings, seed."""

    prompt_ids: list[list[int]]  # one list per choice group: each prompt, repeated n times for greedy search
    config: GenerationConfig
    seed: int | None
    echo_logprobs: int | None  # with echo and logprobs: top alternatives of each prompt token


# The settings a request sets under their own (Hugging Face's) names, copied as they are. The rest are
# OpenAI's fields (or temperature, whose 0 means greedy): the table says how each maps, settings() does it.
AS_IS = tuple(s.name for s in SETTINGS.values() if s.serve is not None and s.config and s.field() == s.name and not s.serve.maps)


def settings(request: Sampling, defaults: GenerationConfig, max_tokens: int | None, logprobs: int | None, stops: tuple[str, ...] = (), default_max_tokens: int = OPENAI_MAX_TOKENS) -> dict:
    """The GenerationConfig changes a request asks for, over the model's defaults; `default_max_tokens`
    when neither the request nor the model sets a length. `max_tokens` and `logprobs` are the
    request's, as its endpoint reads them (chat: max_completion_tokens, top_logprobs)."""
    changes: dict = {}
    for name in AS_IS:
        value = getattr(request, name)
        if value is not None:
            changes[name] = value
    if request.temperature is not None:
        if request.temperature == 0:  # OpenAI clients mean greedy by it
            changes["do_sample"] = False
        else:
            changes["temperature"] = request.temperature
            changes.setdefault("do_sample", True)
    if max_tokens is not None:
        changes["max_new_tokens"] = max_tokens
    elif defaults.max_new_tokens is None:
        changes["max_new_tokens"] = default_max_tokens
    stop = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
    if stop or stops:
        changes["stop_strings"] = tuple(stops) + tuple(stop)
    if request.logit_bias:  # keys and values were checked (check_request)
        changes["sequence_bias"] = [[[int(key)], value] for key, value in request.logit_bias.items()]
    if logprobs is not None:
        changes["logprobs"] = logprobs
    return changes


def choices(config: GenerationConfig, n: int) -> tuple[GenerationConfig, int]:
    """OpenAI's n: sampling and beams return n sequences per prompt; greedy search, which makes
    one, runs each prompt n times instead (OpenAI returns n equal choices then)."""
    if config.num_beams > 1 or config.do_sample:
        return config.update(num_return_sequences=n) if n != config.num_return_sequences else config, 1
    return config, n
