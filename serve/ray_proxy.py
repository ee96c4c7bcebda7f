"""On Ray's HTTP proxy: errors the proxy makes itself speak OpenAI's error shape.

A replica answers with OpenAI's JSON errors, but Ray's proxy has its own:
plain-text 503 under backpressure, 404 for a path no app serves, and when
the replica running a request dies, no answer at all (uvicorn sends a bare
500) or, mid-stream, a cut connection. This middleware makes each of those a JSON error clients
parse, and ends a broken stream with an error event as `gpt2onnx serve`
does, so a client knows to retry.

Ray loads it in every proxy from an environment variable set where Ray
starts (`gpt2onnx serve --ray` sets it for the instance it starts):

    RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=gpt2onnx.serve.ray_proxy:middlewares
"""

from __future__ import annotations

import json

from starlette.middleware import Middleware

from .app import REPLICA_HEADER
from .errors import body

CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
CALLBACK = "gpt2onnx.serve.ray_proxy:middlewares"
LOST = "the replica serving this request stopped before it finished (Ray is restarting it): retry the request"


def middlewares() -> list[Middleware]:
    """The callback Ray's proxy calls for its middlewares."""
    return [Middleware(ProxyErrors)]


def _json(status: int, message: str, code: str, headers: list | None = None) -> tuple[dict, dict]:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    payload = json.dumps(body(status, message, kind, None, code)).encode()
    start = {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()), *(headers or [])]}
    return start, {"type": "http.response.body", "body": payload, "more_body": False}


class ProxyErrors:
    """ASGI middleware: the proxy's own errors as OpenAI JSON; a lost replica as 503 or a stream's error event."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        seen = {"started": False, "finished": False, "stream": False, "held": None, "text": b""}

        async def watch(message):
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers") or [])
                from_replica = REPLICA_HEADER.encode() in {k.lower() for k in headers}
                if message["status"] >= 400 and not from_replica:  # the proxy's own error: rewrite it once the text is in
                    seen["held"] = message
                    return
                seen["started"] = True
                seen["stream"] = headers.get(b"content-type", b"").startswith(b"text/event-stream")
            elif message["type"] == "http.response.body":
                if seen["held"] is not None:
                    seen["text"] += message.get("body", b"")
                    if message.get("more_body"):
                        return
                    await self._rewrite(seen, send)
                    return
                seen["finished"] = not message.get("more_body", False)
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            if seen["started"] and not seen["stream"]:
                raise  # a plain response half sent: only cutting the connection tells the client
        if seen["finished"]:
            return
        if not seen["started"]:
            for message in _json(503, LOST, "replica_lost", [(b"retry-after", b"1")]):
                await send(message)
        elif seen["stream"]:
            event = f"data: {json.dumps(body(503, LOST, 'server_error', None, 'replica_lost'))}\n\n".encode()
            await send({"type": "http.response.body", "body": event, "more_body": False})

    @staticmethod
    async def _rewrite(seen: dict, send) -> None:
        held = seen["held"]
        status = held["status"]
        text = seen["text"].decode(errors="replace").strip().splitlines()
        message = f"Ray Serve's proxy: {text[0] if text else 'no detail'}"
        code = {404: "not_found", 408: "timeout", 503: "overloaded"}.get(status)
        keep = [(k, v) for k, v in held.get("headers") or [] if k.lower() == b"retry-after"]
        if status == 503 and not keep:
            keep = [(b"retry-after", b"1")]
        seen["started"] = seen["finished"] = True
        for message in _json(status, message, code, keep):
            await send(message)
