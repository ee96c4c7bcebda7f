"""`gpt2onnx serve`: its flags, the checks before it listens, and uvicorn.

It refuses to listen beyond loopback without an API key unless told that the
risk is accepted, and refuses keys no client could send; it checks the model
folder before binding, binds the socket itself (a port in use is one line, not a
traceback), raises the open-file limit for --max-connections, then lets uvicorn
run the app with limits.py's protocol (head deadline, connection cap). SIGTERM
stops taking requests, lets running ones finish for up to --grace seconds, and
exits 0; SIGHUP re-reads --api-key-file.
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import logging
import math
import os
import signal
import socket
from urllib.parse import urlsplit

from gpt2onnx.runtime.engine import SERVE_STEP_TOKENS
from gpt2onnx.runtime.errors import Gpt2OnnxError, ModelLoadError, UsageError

from . import keys, limits, model_source

API_KEY_ENV = "GPT2ONNX_API_KEY"
LOOPBACK_NAMES = ("localhost",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="DIR", default=None, help="export folder to serve (default: the shipped model)")
    parser.add_argument("--model-id", metavar="NAME", default=None, help="the id clients send as model (default: the folder's name)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--slots", type=int, default=4, metavar="N", help="sequences decoded together in one batch (default 4)")
    parser.add_argument("--max-queue", type=int, default=64, metavar="N", help="requests that may wait for a slot; more get 429 (default 64)")
    parser.add_argument("--step-tokens", type=int, default=SERVE_STEP_TOKENS, metavar="N", help=f"tokens one engine step runs: a token for each running request, then prompt chunks, so a long prompt never stalls the others (default {SERVE_STEP_TOKENS}; 0: no cap)")
    parser.add_argument("--api-key", metavar="KEY", default=None, help=f"require Authorization: Bearer KEY on /v1 (default: ${API_KEY_ENV})")
    parser.add_argument("--api-key-file", metavar="PATH", default=None, help="also accept every key in PATH (one a line, # comments); SIGHUP re-reads it")
    parser.add_argument("--insecure-no-api-key", action="store_true", help="listen beyond loopback without an API key: anyone who reaches the port may use it")
    parser.add_argument("--cors-origins", metavar="ORIGIN[,ORIGIN...]", default=None, help="let web pages from these origins (e.g. https://app.example.com, or *) call the API from a browser (default: none)")
    parser.add_argument("--max-connections", type=int, default=limits.MAX_CONNECTIONS, metavar="N", help=f"open connections; more get 503 and are closed at once (default {limits.MAX_CONNECTIONS})")
    parser.add_argument("--read-timeout", type=float, default=limits.READ_TIMEOUT_S, metavar="S", help=f"seconds a client may take to send a request's headers; slower ones get 408 (default {limits.READ_TIMEOUT_S:g})")
    parser.add_argument("--provider", choices=["auto", "cpu", "cuda"], default="auto", help="onnxruntime provider (default auto)")
    parser.add_argument("--threads", type=int, default=None, metavar="N", help="onnxruntime threads (default: its own choice)")
    ray = parser.add_argument_group("Ray Serve (pip install 'gpt2onnx[ray]')")
    ray.add_argument("--ray", action="store_true", help="deploy on Ray Serve: a local Ray instance, or the cluster at --ray-address")
    ray.add_argument("--replicas", type=int, default=1, metavar="N", help="with --ray: replicas, each with its own engine and --threads CPUs (default 1)")
    ray.add_argument("--autoscale", metavar="MIN:MAX", default=None, help="with --ray: scale between MIN and MAX replicas on ongoing requests per slot")
    ray.add_argument("--ray-address", metavar="ADDR", default=None, help="with --ray: join this Ray cluster (e.g. 10.0.0.1:6379 or auto) instead of starting one")
    parser.add_argument("--grace", type=float, default=30.0, metavar="S", help="on SIGTERM, seconds running requests may take to finish (default 30)")


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _api_key(args: argparse.Namespace) -> str | None:
    """--api-key, else $GPT2ONNX_API_KEY, else None; an empty or unsendable key is refused."""
    if args.api_key is not None:
        return keys.check_key(args.api_key, "--api-key")
    if API_KEY_ENV in os.environ:
        return keys.check_key(os.environ[API_KEY_ENV], f"${API_KEY_ENV}")
    return None


def _origins(text: str | None) -> tuple[str, ...]:
    """--cors-origins as a tuple; each must be how a browser sends Origin: scheme://host[:port]."""
    origins = tuple(o.strip() for o in (text or "").split(",") if o.strip())
    for origin in origins:
        parts = urlsplit(origin)
        if origin != "*" and (parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query or parts.fragment):
            raise UsageError(f"--cors-origins takes origins like https://app.example.com (scheme and host, no path or trailing /) or *, got {origin!r}")
    if text is not None and not origins:
        raise UsageError("--cors-origins is empty: give ORIGIN[,ORIGIN...], or leave it out to allow no other origin")
    return origins


def _check(args: argparse.Namespace, api_key: str | None) -> None:
    if args.step_tokens < 0:
        raise UsageError(f"--step-tokens must be >= 1 (or 0 for no cap), got {args.step_tokens}")
    for name in ("slots", "max_queue"):
        value = getattr(args, name)
        if value < (1 if name == "slots" else 0):
            raise UsageError(f"--{name.replace('_', '-')} must be {'>= 1' if name == 'slots' else '>= 0'}, got {value}")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be 0..65535, got {args.port}")
    if args.max_connections < 1:
        raise UsageError(f"--max-connections must be >= 1, got {args.max_connections}")
    if not (math.isfinite(args.read_timeout) and args.read_timeout > 0):
        raise UsageError(f"--read-timeout must be a number of seconds > 0, got {args.read_timeout}")
    if args.ray:  # Ray's proxy holds the connections, and replicas on other nodes get no SIGHUP
        given = [flag for flag, value in (("--max-connections", args.max_connections != limits.MAX_CONNECTIONS),
                                          ("--read-timeout", args.read_timeout != limits.READ_TIMEOUT_S),
                                          ("--api-key-file", args.api_key_file)) if value]
        if given == ["--api-key-file"]:
            raise UsageError(f"--api-key-file does not work with --ray (replicas on other nodes get no SIGHUP): pass --api-key KEY or set {API_KEY_ENV}")
        if given:
            raise UsageError(f"{given[0]} does not work with --ray: Ray's proxy accepts the connections, so limit them in front of it")
    if args.api_key_file is not None:
        keys.read_file(args.api_key_file)  # a missing, unreadable or empty file is refused before anything listens
    if not _is_loopback(args.host) and not api_key and not args.api_key_file and not args.insecure_no_api_key:
        raise UsageError(
            f"refusing to listen on {args.host} without an API key: pass --api-key KEY or --api-key-file PATH (or set {API_KEY_ENV}), "
            "or --insecure-no-api-key to let anyone who reaches the port use it"
        )
    if not args.ray:
        given = [flag for flag, value in (("--replicas", args.replicas != 1), ("--autoscale", args.autoscale), ("--ray-address", args.ray_address)) if value]
        if given:
            raise UsageError(f"{given[0]} needs --ray: add --ray to deploy on Ray Serve")
    elif args.port == 0:
        raise UsageError("--ray needs a fixed --port: every node's Ray proxy listens on it")
    elif args.autoscale is not None and args.replicas != 1:
        raise UsageError("--replicas and --autoscale exclude each other: give a fixed count or a MIN:MAX range")
    missing = [m for m in ("fastapi", "uvicorn", "prometheus_client") if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"the server needs {', '.join(missing)}: pip install 'gpt2onnx[serve]'")


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise Gpt2OnnxError(f"cannot listen on {host}:{port} ({e.strerror or e}): pick another --port or --host") from None
    return sock


def run(args: argparse.Namespace) -> int:
    from gpt2onnx.runtime.model import read_defaults

    api_key = _api_key(args)
    cors_origins = _origins(args.cors_origins)
    _check(args, api_key)
    model_id = args.model_id or model_source.model_id(args.model)
    logging.basicConfig(format="gpt2onnx serve: %(message)s")
    logging.getLogger("gpt2onnx.serve").setLevel(logging.INFO)
    if args.ray:
        from . import ray_command

        return ray_command.run(args, api_key, model_id, cors_origins)
    open_files = limits.raise_open_file_limit()
    limits.check_fits(args.max_connections, open_files)
    folder = model_source.resolve(args.model)  # a URI is fetched into the cache once
    read_defaults(folder)  # a bad folder fails here, before anything listens
    import uvicorn

    from .app import ServeOptions, create_app

    options = ServeOptions(
        folder, model_id, args.slots, args.max_queue, api_key, provider=args.provider, threads=args.threads,
        api_key_file=args.api_key_file, cors_origins=cors_origins, read_timeout=args.read_timeout,
        step_tokens=args.step_tokens or None,
    )
    sock = _bind(args.host, args.port)
    fatal: list[str] = []
    protocol = limits.protocol_class(limits.Limits(args.max_connections, args.read_timeout))
    server = uvicorn.Server(uvicorn.Config(
        None, log_level="warning", access_log=False, timeout_graceful_shutdown=args.grace,
        http=protocol, timeout_keep_alive=limits.KEEP_ALIVE_S, backlog=limits.backlog(args.max_connections, open_files),
        h11_max_incomplete_event_size=limits.MAX_HEAD_BYTES,
    ))

    def on_fatal(message: str) -> None:
        fatal.append(message)
        server.should_exit = True

    server.config.app = create_app(options, on_fatal)
    host, port = sock.getsockname()[:2]
    logging.getLogger("gpt2onnx.serve").info("%s on http://%s:%d (%d slots), loading the model", model_id, host, port, args.slots)
    # uvicorn handles SIGTERM while it runs (graceful shutdown), then raises it again: let that end in exit 0.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    if args.api_key_file is not None and hasattr(signal, "SIGHUP"):  # only then: otherwise SIGHUP (the terminal closing) still ends the server
        signal.signal(signal.SIGHUP, lambda signum, frame: server.config.app.state.api_keys.reload())
    server.run(sockets=[sock])
    if fatal:
        raise ModelLoadError(fatal[0])
    return 0
