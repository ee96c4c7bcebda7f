"""OpenAI's response objects, built from gpt2onnx's results: completions and chat,
whole or as stream chunks, their logprobs, usage and finish reasons."""

from __future__ import annotations

import secrets
import time

from gpt2onnx.runtime import TokenLogprobs

# gpt2onnx's finish reasons -> OpenAI's: eos and stop strings "stop"; the token budget and a
# full context "length".
FINISH = {"eos": "stop", "stop": "stop", "length": "length", "context": "length", "cancelled": "stop", None: None}


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}


def envelope(kind: str, request_id: str, model: str, choices: list[dict], created: int | None = None) -> dict:
    return {"id": request_id, "object": kind, "created": created or int(time.time()), "model": model, "choices": choices}


class CompletionLogprobs:
    """The completions API's logprobs object, grown token by token: tokens, token_logprobs,
    top_logprobs (one dict per token) and text_offset (each token's start in the choice's text)."""

    def __init__(self, token_text, offset: int = 0):
        self.token_text, self.offset = token_text, offset
        self.data = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}

    def add(self, token_id: int, record: TokenLogprobs | None) -> None:
        text = self.token_text(token_id)
        self.data["tokens"].append(text)
        self.data["token_logprobs"].append(None if record is None else record.logprob)
        self.data["top_logprobs"].append(None if record is None else {self.token_text(t): lp for t, lp in record.top})
        self.data["text_offset"].append(self.offset)
        self.offset += len(text)

    def take(self) -> dict:
        """What was added since the last take (a stream chunk's share)."""
        out, self.data = self.data, {k: [] for k in self.data}
        return out


def chat_logprobs(tokenizer, records: list[TokenLogprobs]) -> dict:
    """The chat API's logprobs: {"content": [{token, logprob, bytes, top_logprobs}]}; `bytes` are the
    token's own (a token holding part of a UTF-8 character has U+FFFD as its text, not as its bytes)."""

    def entry(token_id: int, logprob: float) -> dict:
        return {"token": tokenizer.token_text(token_id), "logprob": logprob, "bytes": list(tokenizer.token_bytes(token_id))}

    return {"content": [entry(r.token_id, r.logprob) | {"top_logprobs": [entry(t, lp) for t, lp in r.top]} for r in records]}
