"""What GET /openapi.json says the server answers: pydantic models of every response
body (OpenAI's error object, completions and chat completions whole and as stream
chunks, the models list, tokenize, detokenize, health) and, per route, the `responses=`
dict naming every status it can return with its content types.

They are documentation only: the routes pass them as `responses=`, never as
`response_model`, so no answer is validated or re-serialized on the hot path
(tests/test_serve_schema.py checks the real answers against them instead).

Statuses every route can get before any route runs: 408 (the request head came too
slowly), 431 (the head is too large) and 503 (too many connections), from limits.py on
the socket; on Ray Serve, the proxy's 408 and 503 (ray_proxy.py). Statuses the app
adds: 400 (bad JSON, unknown field, value out of range: FastAPI's 422 is answered as
400, see install()), 401 (API key), 404 (model not served), 413 (body over 1 MiB),
429 (queue full), 499 (the client went away: counted, nobody reads it), 500, and 503
(the model is loading).
"""

from __future__ import annotations

from typing import Literal

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

REF = "#/components/schemas/{model}"


class Doc(BaseModel):
    """A response object: exactly these fields (extra ones would be a schema violation)."""

    model_config = ConfigDict(extra="forbid")


# --- errors -----------------------------------------------------------------------------


class ErrorDetail(Doc):
    message: str = Field(description="What is wrong and how to fix it, in one line")
    type: str = Field(description="invalid_request_error, rate_limit_error or server_error")
    param: str | None = Field(description="The request field at fault, if one is")
    code: str | None = Field(description="e.g. model_not_found, invalid_api_key, queue_full, loading, too_many_connections")


class ErrorResponse(Doc):
    """OpenAI's error object: every status other than 200 answers it."""

    error: ErrorDetail


# --- completions ------------------------------------------------------------------------

Finish = Literal["stop", "length"]  # responses.FINISH's values


class Usage(Doc):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionLogprobs(Doc):
    """responses.CompletionLogprobs: one entry per token in each list. The first echoed prompt
    token has no logprob (null), having nothing before it."""

    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class CompletionChoice(Doc):
    text: str
    index: int
    logprobs: CompletionLogprobs | None
    finish_reason: Finish


class Completion(Doc):
    """POST /v1/completions, "stream": false."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class CompletionChunkChoice(Doc):
    text: str
    index: int
    logprobs: CompletionLogprobs | None
    finish_reason: Finish | None = Field(description="Set in each choice's last chunk")


class CompletionChunk(Doc):
    """One event of POST /v1/completions with "stream": true. With stream_options.include_usage
    the last one has no choices and the usage."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChunkChoice]
    usage: Usage | None = None


# --- chat -------------------------------------------------------------------------------


class TopLogprob(Doc):
    token: str
    logprob: float
    bytes: list[int] = Field(description="The token's text as UTF-8")


class TokenLogprob(Doc):
    token: str
    logprob: float
    bytes: list[int]
    top_logprobs: list[TopLogprob]


class ChatLogprobs(Doc):
    content: list[TokenLogprob]


class ChatMessage(Doc):
    role: Literal["assistant"]
    content: str


class ChatChoice(Doc):
    index: int
    message: ChatMessage
    logprobs: ChatLogprobs | None
    finish_reason: Finish


class ChatCompletion(Doc):
    """POST /v1/chat/completions, "stream": false."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ChatDelta(Doc):
    role: Literal["assistant"] | None = Field(None, description="In each choice's first chunk")
    content: str | None = Field(None, description="Absent in each choice's last chunk")


class ChatChunkChoice(Doc):
    index: int
    delta: ChatDelta
    logprobs: ChatLogprobs | None
    finish_reason: Finish | None


class ChatCompletionChunk(Doc):
    """One event of POST /v1/chat/completions with "stream": true."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


# --- the rest ---------------------------------------------------------------------------


class ModelObject(Doc):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(Doc):
    object: Literal["list"]
    data: list[ModelObject]


class Tokenized(Doc):
    tokens: list[int]
    count: int
    max_model_len: int = Field(description="The model's context, in tokens")


class Detokenized(Doc):
    prompt: str


class Health(Doc):
    status: Literal["ok"]
    model: str
    slots: int
    replica: str | None = Field(None, description="The replica's name, on Ray Serve")
    pid: int | None = Field(None, description="The replica's process, on Ray Serve")


class Loading(Doc):
    status: Literal["loading"]


# --- responses= per route ---------------------------------------------------------------


def _error(description: str) -> dict:
    return {"model": ErrorResponse, "description": description}


# What can answer any request, whatever its route: limits.py on the socket, and errors.py's last resort.
_ANY = {
    408: _error("The request head did not arrive within --read-timeout (the connection is closed), or Ray's proxy timed out"),
    431: _error("The request head is over 64 KiB; the connection is closed"),
    500: _error("An internal error (or, on the generation routes, a failed generation)"),
    503: _error("Too many connections are open (--max-connections), or on Ray Serve no replica can take it: retry after Retry-After"),
}
_KEY = {401: _error("Missing or wrong API key (when the server has one): send Authorization: Bearer KEY")}
_BODY = {
    400: _error("The body is not valid JSON, has an unknown field, or a value out of range or refused"),
    413: _error("The request body is over the server's limit (1 MiB by default)"),
}
_MODEL = {
    404: _error("The request names a model this server does not serve (GET /v1/models)"),
    503: _error("The model is still loading (retry after Retry-After), or too many connections are open"),
}
_QUEUE = {
    429: _error("The queue is full (--max-queue): retry after Retry-After"),
    499: _error("The client went away before the answer (nobody reads this one)"),
}


def _stream(chunk: type[BaseModel]) -> dict:
    """A server-sent event of a stream: its data is a chunk as JSON (an error object if generation
    fails midway), and the last one is [DONE]. Schema of one event, as OpenAPI before 3.2 does
    (3.2's itemSchema), in the shape FastAPI gives its own event streams."""
    payload = {"anyOf": [{"$ref": REF.format(model=chunk.__name__)}, {"$ref": REF.format(model="ErrorResponse")}]}
    return {
        "schema": {
            "type": "object",
            "required": ["data"],
            "properties": {
                "data": {"type": "string", "if": {"const": "[DONE]"}, "else": {"contentMediaType": "application/json", "contentSchema": payload}},
                "event": {"type": "string"},
                "id": {"type": "string"},
                "retry": {"type": "integer", "minimum": 0},
            },
        }
    }


def _generation(whole: type[BaseModel], chunk: type[BaseModel]) -> dict:
    return {
        200: {
            "model": whole,
            "description": f'The {whole.__name__} as JSON; with "stream": true, server-sent events: one {chunk.__name__} per '
                           'data line (an error object if generation fails midway), then "data: [DONE]"',
            "content": {"text/event-stream": _stream(chunk)},
        },
        **_ANY, **_KEY, **_BODY, **_MODEL, **_QUEUE,
    }


HEALTH = {
    200: {"model": Health, "description": "The model is loaded"},
    **_ANY,
    503: {"model": Loading | ErrorResponse, "description": 'The model is still loading ({"status": "loading"}), or too many connections are open'},
}
METRICS = {200: {"description": "Prometheus' text format", "content": {"text/plain": {"schema": {"type": "string"}}}}, **_ANY}
MODELS = {200: {"model": ModelList, "description": "The one model served"}, **_ANY, **_KEY}
MODEL = {200: {"model": ModelObject, "description": "The model"}, **_ANY, **_KEY, 404: _MODEL[404]}
TOKENIZE = {200: {"model": Tokenized, "description": "The prompt's token ids"}, **_ANY, **_KEY, **_BODY, **_MODEL}
DETOKENIZE = {200: {"model": Detokenized, "description": "The tokens' text"}, **_ANY, **_KEY, **_BODY, **_MODEL}
COMPLETIONS = _generation(Completion, CompletionChunk)
CHAT = _generation(ChatCompletion, ChatCompletionChunk)

# Schemas that only the event streams' data refers to: FastAPI can't see them in a raw content dict.
_STREAMED = (CompletionChunk, ChatCompletionChunk, ErrorResponse)


def install(app: FastAPI) -> None:
    """Finish FastAPI's generated schema, once, when /openapi.json is first asked for:

    - drop the 422 FastAPI documents for every route with a body or path parameter, and its
      HTTPValidationError schemas: errors.py answers request validation errors with 400 (OpenAI's
      status, documented above), so no 422 is ever sent. FastAPI adds the 422 unless a route
      documents 422, 4XX or default; documenting 4XX would hide undocumented statuses, so it is
      removed here instead;
    - add the stream chunks' schemas, which the event streams' data refers to;
    - give integer fields integer bounds again (_integral_bounds)."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()  # FastAPI's, which it caches in app.openapi_schema: finished here in place
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        _, streamed = models_json_schema([(model, "serialization") for model in _STREAMED], ref_template=REF)
        for name, definition in streamed.get("$defs", {}).items():
            components.setdefault(name, definition)
        _integral_bounds(schema)
        return schema

    app.openapi = openapi


def _integral_bounds(node) -> None:
    """FastAPI passes its schema through its OpenAPI models, whose bounds are floats: `n`'s minimum 1
    comes out as 1.0. JSON Schema reads both alike, but a client that takes the bound as a value
    sends 1.0, which the request models' strict integers refuse. An integer's bounds become ints."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"):
                if isinstance(node.get(key), float) and node[key].is_integer():
                    node[key] = int(node[key])
        for value in node.values():
            _integral_bounds(value)
    elif isinstance(node, list):
        for value in node:
            _integral_bounds(value)
