"""The FastAPI application: its state (model, scheduler, metrics), its middleware and security.

The model loads in a background thread once the server is up: /health answers
503 until it is ready, then 200. /v1 routes (and /tokenize, /detokenize) need
`Authorization: Bearer KEY` when the server has an API key; keys are compared
in constant time. routes.py registers every route.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import Depends, FastAPI, Request
from starlette.middleware.cors import CORSMiddleware

from gpt2onnx.runtime import Gpt2OnnxError, Model, load
from gpt2onnx.runtime.engine import SERVE_STEP_TOKENS

from . import errors, openapi, routes
from .errors import ApiError
from .keys import ApiKeys
from .metrics import Metrics
from .scheduler import Scheduler

log = logging.getLogger("gpt2onnx.serve")
REPLICA_HEADER = "x-gpt2onnx-replica"


@dataclass(frozen=True)
class ServeOptions:
    """How the server runs (the `gpt2onnx serve` flags)."""

    model: str | None = None  # export folder; None: the shipped default model
    model_id: str = "gpt2onnx-default"  # the id clients name in "model"
    slots: int = 4  # requests decoded together in one batch
    max_queue: int = 64  # requests that may wait for a slot before 429
    api_key: str | None = None  # required as a Bearer token on /v1 when set
    api_key_file: str | None = None  # more accepted keys, one a line; re-read on SIGHUP (keys.py)
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call the API; none: no CORS headers
    provider: str = "auto"  # onnxruntime provider: auto, cpu or cuda
    threads: int | None = None  # onnxruntime intra-op threads (None: its default)
    max_body_bytes: int = 1 << 20  # larger request bodies get 413
    read_timeout: float = 10.0  # seconds a client has to send a request (--read-timeout; limits.py times the head)
    wait_for_model: bool = False  # load before taking requests, raising if it fails (Ray replicas)
    replica: str | None = None  # named in the X-Gpt2onnx-Replica header and /health (Ray replicas)
    step_tokens: int | None = SERVE_STEP_TOKENS  # tokens one engine step runs: running rows first, then prompt chunks (None: no cap)


class State:
    """What the routes share: the options, and the model and scheduler once loaded."""

    def __init__(self, options: ServeOptions, on_fatal: Callable[[str], None] | None, model: Model | None = None):
        self.options, self.on_fatal, self.loaded = options, on_fatal, model
        self.metrics = Metrics()
        self.model: Model | None = None
        self.scheduler: Scheduler | None = None

    def load(self) -> None:
        """Load the model and start the scheduler; raises Gpt2OnnxError."""
        model = self.loaded if self.loaded is not None else load(self.options.model, provider=self.options.provider, threads=self.options.threads)
        scheduler = Scheduler(model, self.options.slots, self.options.max_queue, self.metrics, self.options.step_tokens)
        scheduler.start()
        self.model, self.scheduler = model, scheduler
        log.info("model loaded: %s on %s, %d slots", model.folder, model.provider, self.options.slots)

    def load_in_background(self) -> None:
        """load(), telling on_fatal (or the log) instead of raising: /health stays 503."""
        try:
            self.load()
        except Gpt2OnnxError as e:
            if self.on_fatal:  # the command prints it and exits
                self.on_fatal(str(e).splitlines()[0])
            else:
                log.error("gpt2onnx: error: %s", str(e).splitlines()[0])

    def ready(self) -> tuple[Model, Scheduler]:
        if self.scheduler is None:
            raise ApiError(503, "the model is still loading: retry when GET /health answers 200", "server_error", code="loading", headers={"Retry-After": "1"})
        return self.model, self.scheduler

    def check_model(self, name: str | None) -> None:
        if name is not None and name != self.options.model_id:
            raise ApiError(404, f"model {name!r} is not served here: use {self.options.model_id!r} (GET /v1/models)", param="model", code="model_not_found")


class NameReplica:
    """ASGI middleware: every response names the replica that made it (X-Gpt2onnx-Replica)."""

    def __init__(self, app, replica: str):
        self.app, self.header = app, (REPLICA_HEADER.encode(), replica.encode())

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def named(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        await self.app(scope, receive, named)


def create_app(options: ServeOptions, on_fatal: Callable[[str], None] | None = None, model: Model | None = None) -> FastAPI:
    """The app; `on_fatal` is called (with a one-line message) if the model fails to load.
    `model`, when given, is options.model already loaded (a Ray replica loads it in its
    constructor, where a failure reaches Ray's deployment status)."""
    state = State(options, on_fatal, model)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if options.wait_for_model:  # a failure raises here, and the replica fails with its message
            await asyncio.get_running_loop().run_in_executor(None, state.load)
            loading = asyncio.sleep(0)
        else:
            loading = asyncio.get_running_loop().run_in_executor(None, state.load_in_background)
        yield
        await loading
        if state.scheduler is not None:
            await asyncio.get_running_loop().run_in_executor(None, state.scheduler.stop)

    app = FastAPI(title="gpt2onnx", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    app.state.gpt2onnx = state
    errors.install(app)
    openapi.install(app)  # /openapi.json: no 422 (errors are 400 here), the stream chunks' schemas, integer bounds
    app.add_middleware(errors.BodyLimit, limit=options.max_body_bytes, timeout=options.read_timeout)
    app.add_middleware(errors.CountRequests, metrics=state.metrics)  # outside BodyLimit: its 413s and 408s count too
    if options.cors_origins:  # outside the others: preflights need no key, and errors carry the headers too
        app.add_middleware(
            CORSMiddleware, allow_origins=list(options.cors_origins), allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"], expose_headers=["Retry-After", REPLICA_HEADER],
        )
    if options.replica is not None:
        app.add_middleware(NameReplica, replica=options.replica)
    keys = app.state.api_keys = ApiKeys(options.api_key, options.api_key_file)  # command.py reloads it on SIGHUP

    def authorized(request: Request) -> None:
        if not keys.required:
            return
        sent = request.headers.get("authorization", "")
        token = sent[7:] if sent[:7].lower() == "bearer " else ""
        if not keys.accepts(token):
            raise ApiError(401, "missing or wrong API key: send the header Authorization: Bearer KEY", code="invalid_api_key")

    guarded = [Depends(authorized)]

    routes.add(app, state, guarded)
    return app
