"""Real Ray Serve deployments for the tests: `gpt2onnx serve --ray` or `serve run CONFIG`
in a subprocess on 127.0.0.1, the replicas' processes, a file server for model
archives, and a steady load of openai-client requests that retries what fails."""

from __future__ import annotations

import collections
import functools
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai

from serve_helpers import free_port

READY_S = 180
NO_EOS = {"50256": -100}  # every request runs to max_tokens, so a load's requests are as long as asked
REPLICA_TITLE = b"ray::ServeReplica:gpt2onnx:Gpt2Onnx"  # Ray names a replica's process after its app and deployment
PROXY_CALLBACK = {"RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": "gpt2onnx.serve.ray_proxy:middlewares"}


class RayServe:
    """A command that deploys on a Ray instance it starts; ready when it prints `ready_line`,
    or (None) when /health answers 200 through Ray's proxy."""

    def __init__(self, command: list[str], port: int, ready_line: str | None, env: dict | None = None):
        self.port, self.url = port, f"http://127.0.0.1:{port}"
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, **(env or {})}, start_new_session=True,
                                     preexec_fn=_default_sigint)

        def read():
            for line in self.proc.stdout:
                self.lines.append(line)
                if ready_line and ready_line in line:
                    self._ready.set()

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + READY_S
        while not (self._ready.wait(0.2) or (ready_line is None and self._healthy())):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the deployment did not come up:\n{self.output()[-4000:]}")

    @classmethod
    def cli(cls, *args: str, env: dict | None = None) -> RayServe:
        port = free_port()
        command = [sys.executable, "-m", "gpt2onnx.cli", "serve", "--ray", "--port", str(port), *args]
        return cls(command, port, "Ctrl-C stops it", env)

    @classmethod
    def config(cls, path: Path, port: int, env: dict | None = None) -> RayServe:
        serve = Path(sys.executable).with_name("serve")
        return cls([str(serve), "run", str(path)], port, None, {**PROXY_CALLBACK, **(env or {})})

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def output(self) -> str:
        return "".join(self.lines)

    def health(self) -> dict:
        return httpx.get(f"{self.url}/health", timeout=10).json()

    def replicas_by_health(self, want: int, timeout: float = 60) -> dict[str, int]:
        """replica id -> pid for `want` distinct replicas answering /health through the proxy."""
        seen: dict[str, int] = {}
        deadline = time.monotonic() + timeout
        while len(seen) < want and time.monotonic() < deadline:
            h = self.health()
            if "replica" in h:
                seen[h["replica"]] = h["pid"]
        return seen

    def stop(self, sig: int = signal.SIGINT, timeout: float = 90) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()


def _default_sigint() -> None:
    """In the child: Ctrl-C's default, even when this suite runs as a shell's background job
    (which ignores SIGINT, and a child would inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def replica_pids() -> set[int]:
    """The pids of every live gpt2onnx replica process on this machine."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(REPLICA_TITLE) and b"Z" not in _state(entry):
                    pids.add(int(entry.name))
            except OSError:  # the process ended while we looked
                pass
    return pids


def _state(entry: Path) -> bytes:
    return (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[0]


def wait_for(condition, timeout: float, poll: float = 0.5) -> float:
    """Seconds until condition() holds (polling a cluster's state); raises after timeout."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not true after {timeout} s")
        time.sleep(poll)
    return time.monotonic() - start


class ArchiveServer:
    """An HTTP file server on 127.0.0.1 for a folder, counting GETs per path."""

    def __init__(self, folder: Path):
        self.gets: collections.Counter = collections.Counter()
        gets = self.gets

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                gets[self.path] += 1
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Load:
    """`clients` threads sending greedy requests of `max_tokens` (every other one streamed)
    until stopped; a failed attempt is retried, up to `attempts` times."""

    def __init__(self, url: str, clients: int, max_tokens: int = 48, attempts: int = 5, timeout: float = 30, api_key: str = "unused"):
        self.client = openai.OpenAI(base_url=f"{url}/v1", api_key=api_key, max_retries=0, timeout=timeout)
        self.max_tokens, self.attempts = max_tokens, attempts
        self.done = 0  # requests that succeeded (after retries)
        self.failures: list[tuple[str, object, object]] = []  # (error type, HTTP status, error code) per failed attempt
        self.retried_ok = 0  # requests that failed at first and then succeeded
        self.gave_up = 0
        self.replicas: collections.Counter = collections.Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(clients)]
        for t in self.threads:
            t.start()

    def _once(self, stream: bool) -> None:
        raw = self.client.completions.with_raw_response.create(model="gpt2onnx-default", prompt="Once upon a time", max_tokens=self.max_tokens,
                                                               temperature=0, stream=stream, logit_bias=NO_EOS)
        with self._lock:
            self.replicas[raw.headers.get("x-gpt2onnx-replica")] += 1
        parsed = raw.parse()
        text = "".join(chunk.choices[0].text for chunk in parsed if chunk.choices) if stream else parsed.choices[0].text
        assert text

    def _client(self, i: int) -> None:
        while not self._stop.is_set():
            for attempt in range(self.attempts):
                try:
                    self._once(stream=i % 2 == 0)
                except openai.APIError as e:
                    with self._lock:
                        self.failures.append((type(e).__name__, getattr(e, "status_code", None), getattr(e, "code", None)))
                    continue
                with self._lock:
                    self.done += 1
                    self.retried_ok += attempt > 0
                break
            else:
                with self._lock:
                    self.gave_up += 1

    def stop(self) -> Load:
        self._stop.set()
        for t in self.threads:
            t.join(120)
        return self
