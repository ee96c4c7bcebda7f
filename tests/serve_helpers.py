"""A real `gpt2onnx serve` in a subprocess on 127.0.0.1, for the server tests."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

STARTUP_S = 120  # the model loads in the background; /health says when it is ready


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`gpt2onnx serve ARGS` on a free loopback port, ready when started."""

    def __init__(self, *args: str, env: dict | None = None, open_files: int | None = None):
        """`open_files`: the server's descriptor limit, soft and hard (as under `ulimit -n`)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "gpt2onnx.cli", "serve", "--port", str(self.port), *args]
        limit = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))) if open_files else None
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}, preexec_fn=limit)
        deadline = time.monotonic() + STARTUP_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited {self.proc.returncode}: {self.proc.stderr.read()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the server did not become ready")
            time.sleep(0.1)  # polling for readiness, not an assertion

    def rss_kb(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

    def metric(self, name: str) -> float:
        """One sample of /metrics (the first line that starts with `name`)."""
        text = httpx.get(f"{self.url}/metrics").text
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        raise KeyError(name)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def server_fixture(*args: str):
    """A module-scoped fixture: `gpt2onnx serve ARGS` for the module's tests, which must exit 0 when
    SIGTERM stops it at the end (a clean shutdown is part of every server test)."""

    @pytest.fixture(scope="module")
    def server():
        s = Server(*args)
        yield s
        assert s.stop() == 0

    return server
