"""gpt2onnx.serve: an OpenAI-compatible HTTP server (`gpt2onnx serve`).

FastAPI and uvicorn in front, server-sent events for streams, Prometheus
metrics; behind them one scheduler thread drives the runtime's slot engine, so
requests join and leave one running batch. Install with
`pip install 'gpt2onnx[serve]'`.

    app.py        the app: state, security, health, models, metrics, tokenize
    routes.py     every route, registered in one place
    generation.py /v1/completions and /v1/chat/completions: request -> job -> events -> response
    protocol.py   request fields -> gpt2onnx settings, and what one request may ask for
    openapi.py    the response schemas /openapi.json documents (documentation only)
    scheduler.py  the thread that steps the engine for every request
    responses.py  OpenAI's response objects
    chat.py       messages -> a Q/A transcript
    errors.py     OpenAI's error shape, body size and time limits, request counter
    metrics.py    Prometheus metrics
    command.py    the command: flags, safety checks, uvicorn
    limits.py     socket-layer limits: request-head deadline, connection cap, open files
    keys.py       the API keys accepted (--api-key, --api-key-file, re-read on SIGHUP)
    model_source.py  a model folder, or an archive URI fetched once per node

On Ray Serve (`pip install 'gpt2onnx[ray]'`), the same app on many replicas:

    ray_app.py      the application builder (`serve run gpt2onnx.serve.ray_app:build`)
    ray_command.py  `gpt2onnx serve --ray`
    ray_proxy.py    Ray's proxy errors in OpenAI's shape
    ray-serve.yaml, rayservice.yaml   example configs (`serve deploy`, KubeRay)
"""

from .command import add_arguments  # argparse only: FastAPI loads when the server runs

__all__ = ["add_arguments"]
