"""`gpt2onnx serve --ray`: deploy the server on Ray Serve, wait, shut down cleanly.

It starts a local Ray instance (or joins one with --ray-address), deploys
ray_app's application with --replicas or --autoscale, prints where it
listens, and on Ctrl-C or SIGTERM takes the application down: the whole Ray
instance when it started one, only its own application on a joined cluster.
"""

import argparse
import logging
import os
import re
import signal
import socket
import threading

from gpt2onnx.runtime import errors
from gpt2onnx.runtime.errors import Gpt2OnnxError, UsageError

APP_NAME = "gpt2onnx"
# A replica's failure reaches the driver as a traceback text: its last gpt2onnx error is the line to show.
ERROR_LINE = re.compile(r"gpt2onnx\.runtime\.errors\.(\w+): (.+)")


def autoscale_range(text: str) -> tuple[int, int]:
    """--autoscale MIN:MAX -> (min_replicas, max_replicas)."""
    low, sep, high = text.partition(":")
    if not (sep and low.strip().isdigit() and high.strip().isdigit()) or int(high) < max(1, int(low)):
        raise UsageError(f"--autoscale takes MIN:MAX replicas with 0 <= MIN <= MAX and MAX >= 1 (e.g. 1:4), got {text!r}")
    return int(low), int(high)


def deployment_options(args: argparse.Namespace, slots: int) -> dict:
    """num_replicas, or an autoscaling_config that adds a replica when each has `slots` requests."""
    if args.autoscale is None:
        if args.replicas < 1:
            raise UsageError(f"--replicas must be >= 1, got {args.replicas}")
        return {"num_replicas": args.replicas}
    low, high = autoscale_range(args.autoscale)
    return {"autoscaling_config": {"min_replicas": low, "max_replicas": high, "target_ongoing_requests": slots}}


def _check_port(host: str, port: int) -> None:
    """Ray's proxy binds later, in another process, where a taken port is only a log line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            raise Gpt2OnnxError(f"cannot listen on {host}:{port} ({e.strerror or e}): pick another --port or --host") from None


def run(args: argparse.Namespace, api_key: str | None, model_id: str, cors_origins: tuple[str, ...] = ()) -> int:
    try:
        import ray
        from ray import serve
    except ImportError:
        raise UsageError("--ray needs Ray Serve: pip install 'gpt2onnx[ray]'") from None
    from . import model_source, ray_proxy
    from .ray_app import BuildArgs, deployment

    options = deployment_options(args, args.slots)
    if not (args.ray_address or "").startswith("ray://"):  # the driver runs on a node: check (and fetch) the model here first
        from gpt2onnx.runtime.model import read_defaults

        read_defaults(model_source.resolve(args.model))
    if args.port:
        _check_port(args.host, args.port)
    build_args = BuildArgs(model=args.model, model_id=model_id, slots=args.slots, max_queue=args.max_queue, step_tokens=args.step_tokens, api_key=api_key, provider=args.provider, threads=args.threads, cors_origins=cors_origins)
    log = logging.getLogger("gpt2onnx.serve")
    joined = args.ray_address is not None
    if not joined:  # the proxies of the instance started here load ray_proxy's middleware (a cluster sets it at `ray start`)
        os.environ.setdefault(ray_proxy.CALLBACK_ENV, ray_proxy.CALLBACK)
    # "local": a new instance even when `ray start` left one running here (Ctrl-C must not stop someone else's Serve)
    ray.init(address=args.ray_address or "local", logging_level=logging.WARNING, configure_logging=True)
    try:
        if not joined and args.provider == "cuda" and not ray.cluster_resources().get("GPU"):
            raise UsageError("--provider cuda: Ray found no GPU here for a replica; use --provider cpu (or auto)")
        quiet = {"log_level": "WARNING", "enable_access_log": False}  # like `gpt2onnx serve`: no line per request
        serve.start(http_options={"host": args.host, "port": args.port}, logging_config=quiet)
        try:
            serve.run(deployment(build_args, **options).bind(build_args), name=APP_NAME, route_prefix="/", logging_config=quiet)
        except RuntimeError as e:
            raise _failure(serve, str(e)) from None
        scaling = options.get("autoscaling_config")
        count = f"{scaling['min_replicas']}..{scaling['max_replicas']} replicas, autoscaling" if scaling else f"{options['num_replicas']} replicas"
        where = f"port {args.port} of every node's proxy" if joined else f"http://{args.host}:{args.port}"
        log.info("%s on %s (%s, %d slots each; Ray at %s); Ctrl-C stops it", model_id, where, count, args.slots, ray.get_runtime_context().gcs_address)
        _wait_for_signal()
        log.info("shutting down")
    finally:
        if joined:
            serve.delete(APP_NAME)  # the cluster and its other applications stay up
        else:
            serve.shutdown()
        ray.shutdown()
    return 0


def _failure(serve, error: str) -> Gpt2OnnxError:
    """A failed deployment as the replica's gpt2onnx error (its class and line, from the deployment's status)."""
    try:
        deployments = serve.status().applications[APP_NAME].deployments.values()
        texts = [d.message for d in deployments] + [error]
    except Exception:  # the status itself failed: say what serve.run said
        texts = [error]
    found = [match for text in texts for match in ERROR_LINE.findall(text)]
    if not found:
        return Gpt2OnnxError(f"the deployment failed: {error.strip().splitlines()[-1]}")
    name, line = found[-1]
    kind = getattr(errors, name, Gpt2OnnxError)
    return kind(line) if isinstance(kind, type) and issubclass(kind, Gpt2OnnxError) else Gpt2OnnxError(line)


def _wait_for_signal() -> None:
    """Until Ctrl-C or SIGTERM (the CLI raises both as KeyboardInterrupt)."""
    # A shell starts background jobs with SIGINT ignored, and Python keeps that: take
    # Ctrl-C back, as uvicorn does for `gpt2onnx serve`, so it always stops the deployment.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
