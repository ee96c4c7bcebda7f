"""Errors in OpenAI's shape, {"error": {"message", "type", "param", "code"}}, and the
two ASGI middlewares that guard every request: the body-size limit and the
per-endpoint request counter.

Messages are the CLI's one-line messages: what is wrong and how to fix it.
"""

from __future__ import annotations

import asyncio
import json

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from gpt2onnx.runtime import UsageError

from .metrics import Metrics
from .scheduler import QueueFull

RETRY_AFTER_S = 1  # what a 429 tells the client to wait


class ApiError(Exception):
    """An error the client gets as OpenAI's error object."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code, self.headers = status, message, kind, param, code, headers


def body(status: int, message: str, kind: str = "invalid_request_error", param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def response(e: ApiError) -> JSONResponse:
    return JSONResponse(body(e.status, e.message, e.kind, e.param, e.code), status_code=e.status, headers=e.headers)


def _validation_message(errors: list[dict]) -> tuple[str, str | None]:
    """One line for pydantic's most telling complaint, and the field it is about. A value that fits
    none of a union's forms gets one complaint per form: a broken bound beats a wrong type there."""
    if not errors:
        return "invalid request", None
    error = min(errors, key=lambda e: str(e.get("type", "")).endswith("_type"))
    loc = [str(p) for p in error.get("loc", ()) if p != "body" and not _union_tag(p)]
    param = ".".join(loc) or None
    if error.get("type") == "json_invalid":
        return f"the request body is not valid JSON ({error.get('ctx', {}).get('error', 'parse error')}): send a JSON object", None
    if error.get("type") == "missing" and param:
        return f"{param} is required", param
    if error.get("type") == "extra_forbidden":
        return f"unknown field {param!r}: see the fields of this endpoint in the README's Serve section", param
    if error.get("type") in ("model_attributes_type", "dict_type", "model_type") and not loc:
        return "the request body must be a JSON object", None
    return f"{param}: {error.get('msg', 'invalid value')}" if param else error.get("msg", "invalid request"), param


def _union_tag(part) -> bool:
    """pydantic names the union member it tried in the error's location ("list[int]", "TextPart"):
    not a field of the request."""
    return isinstance(part, str) and (not part.isidentifier() or part[:1].isupper() or part in ("str", "int", "float", "bool", "dict", "list"))


def install(app: FastAPI) -> None:
    """Every error leaves as OpenAI's error object, never as a traceback."""

    @app.exception_handler(ApiError)
    async def _api(request: Request, e: ApiError):
        return response(e)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError):
        message, param = _validation_message(list(e.errors()))
        return response(ApiError(400, message, param=param))

    @app.exception_handler(UsageError)
    async def _usage(request: Request, e: UsageError):
        return response(ApiError(400, str(e).splitlines()[0]))

    @app.exception_handler(QueueFull)
    async def _full(request: Request, e: QueueFull):
        return response(ApiError(429, str(e), "rate_limit_error", code="queue_full", headers={"Retry-After": str(RETRY_AFTER_S)}))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, e: HTTPException):
        message = f"no route {request.method} {request.url.path}" if e.status_code in (404, 405) else str(e.detail)
        return response(ApiError(e.status_code, message, code="not_found" if e.status_code == 404 else None, headers=e.headers))  # 405's Allow

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, e: Exception):
        return response(ApiError(500, f"internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", "server_error"))


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes gets 413, one that takes over `timeout`
    seconds to arrive gets 408 (limits.py guards the head), and the app never sees either.
    The body is read here first (requests are small), so a chunked upload is counted too."""

    def __init__(self, app, limit: int, timeout: float = 10.0):
        self.app, self.limit, self.timeout = app, limit, timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(send)
        chunks, size = [], 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout  # for the whole body: a byte a second must not keep it alive
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                return await self._too_slow(send)
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await self._refuse(send)
            if not message.get("more_body"):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as Starlette expects

        await self.app(scope, replay, send)

    async def _too_slow(self, send) -> None:
        payload = json.dumps(body(408, f"the request body did not arrive within {self.timeout:g} s (--read-timeout): send it at once", code="request_timeout")).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()), (b"connection", b"close")]  # the rest of the body is no request
        await send({"type": "http.response.start", "status": 408, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _refuse(self, send) -> None:
        payload = json.dumps(body(413, f"the request body is over {self.limit} bytes: send a smaller request")).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})


class CountRequests:
    """ASGI middleware: gpt2onnx_requests_total by endpoint (the route's template, as the router matched
    it, "other" for no route: a bounded set of labels) and status. An exception that escapes the app
    is counted as the 500 that Starlette's outermost handler then sends."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        def count(status: int) -> None:
            route = scope.get("route")  # set by the router in the scope it was handed
            self.metrics.requests.labels(getattr(route, "path", "other"), str(status)).inc()

        async def counted(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                count(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counted)
        except Exception:
            if not started:
                count(500)
            raise
