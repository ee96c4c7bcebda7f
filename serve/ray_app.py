"""Ray Serve: the server's FastAPI app on replicas across a cluster.

Each replica builds the very app `gpt2onnx serve` runs (create_app, through
`@serve.ingress`), with its own model, slot engine and scheduler thread on
the CPUs Ray gives it. Ray's proxy on every node routes HTTP requests to
replicas, streams responses through, restarts replicas that die and scales
their number with `autoscaling_config`.

    serve run gpt2onnx.serve.ray_app:build model=/shared/gpt2 slots=4
    serve deploy serve/ray-serve.yaml          # the config file way

`model` is a folder every node can read, or the URI of its archive, fetched
once per node (model_source.py). The builder matches `max_ongoing_requests`
to the slots, so Ray holds the overflow in its proxy and hands a request to
the first replica with a free slot; a config file may override it.
"""

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
import ray
from ray import serve
from ray.serve.deployment import Application, Deployment

from gpt2onnx.runtime import load
from gpt2onnx.runtime.engine import SERVE_STEP_TOKENS

from . import model_source
from .app import ServeOptions, create_app

API_KEY_ENV = "GPT2ONNX_API_KEY"


class BuildArgs(BaseModel):
    """The application's arguments: `serve run ...:build KEY=VALUE`, or a config's `args:`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = None  # export folder on every node, or a URI of its archive; None: the shipped model
    model_id: str | None = None  # the id clients send as "model" (default: the folder's name)
    slots: int = Field(4, ge=1)  # requests one replica decodes together
    max_queue: int = Field(64, ge=0)  # requests Ray's proxy holds for busy replicas before 503
    step_tokens: int = Field(SERVE_STEP_TOKENS, ge=0)  # tokens one engine step runs (0: no cap), as `gpt2onnx serve --step-tokens`
    api_key: str | None = None  # Bearer key for /v1 (default: $GPT2ONNX_API_KEY on the replica)
    provider: Literal["auto", "cpu", "cuda"] = "auto"  # onnxruntime provider (cuda: each replica asks Ray for a GPU)
    threads: int | None = Field(None, ge=1)  # onnxruntime threads (default: the replica's num_cpus)
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call the API (CORS); none: no CORS headers
    cache: str | None = None  # where a node keeps fetched models (default: ~/.cache/gpt2onnx)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _comma_list(cls, value):
        """`serve run ...:build cors_origins=A,B` gives one string; a config's args may give a list."""
        return tuple(o.strip() for o in value.split(",") if o.strip()) if isinstance(value, str) else value


@serve.deployment(name="Gpt2Onnx", ray_actor_options={"num_cpus": 1}, health_check_period_s=5)
@serve.ingress()
class Gpt2OnnxReplica:
    """One replica: fetch the model if it is a URI, then serve create_app's app."""

    def __init__(self, args: BuildArgs):
        replica = serve.get_replica_context().replica_id.unique_id
        folder = model_source.resolve(args.model, args.cache)
        self.options = ServeOptions(
            model=folder,
            model_id=args.model_id or model_source.model_id(args.model),
            slots=args.slots,
            max_queue=args.max_queue,
            step_tokens=args.step_tokens or None,
            api_key=args.api_key or os.environ.get(API_KEY_ENV) or None,
            provider=args.provider,
            threads=args.threads or _assigned_cpus(),
            cors_origins=args.cors_origins,
            wait_for_model=True,  # the scheduler runs before Ray routes a request here
            replica=replica,
        )
        # Loaded here, not in the app's lifespan: Ray reports a constructor's exception (our
        # one-line message) in the deployment's status, a lifespan's only as "startup failed".
        self.model = load(folder, provider=self.options.provider, threads=self.options.threads)
        self.served = None  # the app (not `self.app`: Ray's wrapper owns that name)

    def __serve_build_asgi_app__(self):
        self.served = create_app(self.options, model=self.model)
        return self.served

    def check_health(self) -> None:
        """Ray calls this every health_check_period_s; raising makes it restart the replica."""
        state = self.served.state.gpt2onnx if self.served is not None else None
        if state is not None and state.scheduler is not None and not state.scheduler.alive:
            raise RuntimeError("the scheduler thread stopped")


def _assigned_cpus() -> int:
    return max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))


def deployment(args: BuildArgs, **options) -> Deployment:
    """The deployment with its defaults matched to the args; `options` (num_replicas,
    autoscaling_config, ...) go to Deployment.options."""
    resources = {"num_cpus": args.threads or 1, **({"num_gpus": 1} if args.provider == "cuda" else {})}
    defaults = dict(max_ongoing_requests=args.slots, max_queued_requests=args.max_queue, ray_actor_options=resources)
    return Gpt2OnnxReplica.options(**{**defaults, **options})


def build(args: BuildArgs) -> Application:
    """The application builder Ray's `serve run` and `serve deploy` call."""
    return deployment(args).bind(args)
