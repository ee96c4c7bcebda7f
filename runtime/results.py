"""What a search gives back: one SequenceResult per returned sequence, each
token's log-probabilities, why a sequence stopped, and where the time went.
Every decoding method returns these same types."""

from __future__ import annotations

from dataclasses import dataclass, field

# Why a sequence stopped.
EOS, LENGTH, CONTEXT, STOP, CANCELLED = "eos", "length", "context", "stop", "cancelled"


@dataclass
class Timing:
    """Where the time of one generation went."""

    prefill_s: float = 0.0  # running the prompt through the model
    decode_s: float = 0.0  # every later step: forward pass plus choosing the token
    new_tokens: int = 0  # steps taken (tokens made per row, padding included)
    reused_tokens: int = 0  # prompt tokens whose keys/values a slot already held (prefix reuse): not run again


@dataclass
class TokenLogprobs:
    """One generated token's log-probability under the model, and the top alternatives."""

    token_id: int
    logprob: float
    top: list[tuple[int, float]] = field(default_factory=list)  # (token id, log-probability), most likely first


@dataclass
class SequenceResult:
    """One generated sequence."""

    token_ids: list[int]  # generated ids only, up to where it stopped (eos included)
    text: str  # their text, cut just before a stop string if one was met
    finish_reason: str | None  # "eos", "length", "context", "stop" or "cancelled"
    score: float | None = None  # beam search: HF's sequence score
    logprobs: list[TokenLogprobs] | None = None  # with config.logprobs: one entry per token
