"""Every route the server answers, registered in one place, with what each documents in
/openapi.json (openapi.py). `guarded` routes need the API key (app.py's check). The two
generation routes' work is in generation.py; the others are small enough to be here.
"""

from __future__ import annotations

import functools
import os

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import generation, openapi
from .errors import ApiError
from .protocol import ChatRequest, CompletionRequest, DetokenizeRequest, TokenizeRequest


def add(app: FastAPI, state, guarded: list) -> None:
    options = state.options

    @app.post("/v1/completions", dependencies=guarded, responses=openapi.COMPLETIONS)
    async def completions(body: CompletionRequest, request: Request):
        return await generation.completions(state, body, request)

    @app.post("/v1/chat/completions", dependencies=guarded, responses=openapi.CHAT)
    async def chat_completions(body: ChatRequest, request: Request):
        return await generation.chat_completions(state, body, request)

    @app.get("/health", responses=openapi.HEALTH)
    async def health():
        if state.scheduler is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        alive = {"status": "ok", "model": options.model_id, "slots": options.slots}
        return alive if options.replica is None else {**alive, "replica": options.replica, "pid": os.getpid()}

    @app.get("/metrics", response_class=Response, responses=openapi.METRICS)
    async def metrics():
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    served = {"id": options.model_id, "object": "model", "created": 0, "owned_by": "gpt2onnx"}

    @app.get("/v1/models", dependencies=guarded, responses=openapi.MODELS)
    async def models():
        return {"object": "list", "data": [served]}

    @app.get("/v1/models/{model_id:path}", dependencies=guarded, responses=openapi.MODEL)
    async def model(model_id: str):
        state.check_model(model_id)
        return served

    @app.post("/tokenize", dependencies=guarded, responses=openapi.TOKENIZE)
    async def tokenize(body: TokenizeRequest):
        model, _ = state.ready()
        state.check_model(body.model)
        tokens = await generation.off_loop(model.tokenizer.encode, body.prompt)
        return {"tokens": tokens, "count": len(tokens), "max_model_len": model.info.n_positions}

    @app.post("/detokenize", dependencies=guarded, responses=openapi.DETOKENIZE)
    async def detokenize(body: DetokenizeRequest):
        model, _ = state.ready()
        state.check_model(body.model)
        if any(not 0 <= t < model.info.vocab_size for t in body.tokens):
            raise ApiError(400, f"a token id is outside the vocabulary [0, {model.info.vocab_size})", param="tokens")
        return {"prompt": await generation.off_loop(functools.partial(model.tokenizer.decode, skip_special_tokens=False), body.tokens)}
