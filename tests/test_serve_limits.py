"""`gpt2onnx serve` under socket attacks, and its security flags: a real server on
127.0.0.1 in a subprocess, real sockets, httpx and the openai client.

Slowloris sockets are closed within --read-timeout, also on a keep-alive
connection's next request; connections beyond --max-connections get 503 at once;
1,030 half-sent requests under a 1,024-descriptor limit neither lock a client out
nor fill stderr; requests and streams go on during an attack. Each runs on both
of uvicorn's stacks: uvloop + httptools (uvicorn[standard]) and asyncio + h11,
what a plain `pip install 'gpt2onnx[serve]'` runs. CORS only for
--cors-origins; --api-key-file with SIGHUP; keys and flags no client could use
are refused in one line.
"""

from __future__ import annotations

import json
import os
import queue
import resource
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import openai
import pytest

from attack_helpers import HEAD, closed, half_sent, raise_open_files, slowloris
from serve_helpers import Server
from gpt2onnx.serve import limits

CLI = [sys.executable, "-m", "gpt2onnx.cli"]
HOST = "127.0.0.1"
MARGIN_S = 3.0  # on top of --read-timeout 1: a busy 2-core machine runs timers late
ORIGIN = "https://app.example.com"
STACKS = ["uvloop-httptools", "asyncio-h11"]


@pytest.fixture(scope="session")
def plain_uvicorn(tmp_path_factory) -> dict:
    """The environment of a server whose uvicorn finds neither uvloop nor httptools."""
    hidden = tmp_path_factory.mktemp("plain-uvicorn")
    for name in ("uvloop", "httptools"):
        (hidden / f"{name}.py").write_text("raise ImportError('hidden, as in a plain pip install of uvicorn')\n")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(hidden), os.environ.get("PYTHONPATH")]))}


def serve_on(stack: str, plain_env: dict, *args: str, open_files: int | None = None) -> Server:
    """A server on `stack`, checked: uvloop's library is loaded in it, or not."""
    raise_open_files(4096)
    s = Server(*args, env=plain_env if stack == "asyncio-h11" else None, open_files=open_files)
    with open(f"/proc/{s.proc.pid}/maps") as f:
        assert ("uvloop" in f.read()) == (stack == "uvloop-httptools")
    s.log = Stderr(s)
    return s


class Stderr:
    """The server's stderr lines as they come (a thread reads them, so a flood cannot block it)."""

    def __init__(self, server: Server):
        self.lines: list[str] = []
        self.new: queue.Queue[str] = queue.Queue()
        self.thread = threading.Thread(target=self._read, args=(server.proc.stderr,), daemon=True)
        self.thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line)
            self.new.put(line)

    def all(self) -> list[str]:
        """Every line, once the server has exited."""
        self.thread.join(10)
        return self.lines

    def wait_for(self, text: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.new.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"the server logged no line with {text!r} in {timeout} s") from None
            if text in line:
                return line


@pytest.fixture(scope="module", params=STACKS)
def server(request, plain_uvicorn):
    s = serve_on(request.param, plain_uvicorn, "--read-timeout", "1", "--slots", "2", "--threads", "1")
    yield s
    assert s.stop() == 0


@pytest.mark.slow  # 50 slowloris sockets held to the read timeout, per stack (~5 s)
def test_slowloris_sockets_are_closed_within_the_read_timeout_while_requests_and_streams_go_on(server):
    start = time.monotonic()
    attack = slowloris(HOST, server.port, 50)
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    plain = client.completions.create(model="gpt2onnx-default", prompt="Once upon a time", max_tokens=8, temperature=0)
    streamed = "".join(c.choices[0].text for c in client.completions.create(model="gpt2onnx-default", prompt="Once upon a time", max_tokens=8, temperature=0, stream=True))
    assert plain.choices[0].text and streamed == plain.choices[0].text
    ends = closed(attack, timeout=1 + MARGIN_S, since=start)
    assert None not in ends, f"{ends.count(None)} of 50 slowloris sockets still open after {1 + MARGIN_S} s"
    assert min(e.seconds for e in ends) >= 0.9  # the deadline, not something sooner
    replies = [e for e in ends if e.reply]  # a reset may eat the reply; those that came are 408s
    assert replies and all(e.status == 408 for e in replies)
    error = json.loads(replies[0].reply.split(b"\r\n\r\n", 1)[1])["error"]
    assert "--read-timeout" in error["message"] and error["code"] == "request_timeout"
    print(f"slowloris: 50 sockets closed after {min(e.seconds for e in ends):.2f}..{max(e.seconds for e in ends):.2f} s")


def _response(sock: socket.socket) -> bytes:
    """One whole response (head and Content-Length body) read from `sock`."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_a_keep_alive_connection_gets_the_read_timeout_again_for_its_next_request(server):
    with socket.create_connection((HOST, server.port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert _response(sock).startswith(b"HTTP/1.1 200")
        start = time.monotonic()
        sock.sendall(HEAD[:30])  # the next request starts, and stalls
        [end] = closed([sock], timeout=1 + MARGIN_S, since=start)
    assert end is not None and end.status == 408
    assert 0.9 <= end.seconds < limits.KEEP_ALIVE_S  # the read timeout, not uvicorn's keep-alive one


def test_a_body_sent_a_byte_at_a_time_gets_408_at_the_read_timeout(server):
    head = b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    with socket.create_connection((HOST, server.port), timeout=10) as sock:
        start = time.monotonic()
        sock.sendall(head + b"{")

        def trickle() -> None:  # a byte every 0.2 s: each read is quick, the whole body never comes
            for _ in range(40):
                time.sleep(0.2)
                try:
                    sock.send(b" ")
                except OSError:
                    return

        threading.Thread(target=trickle, daemon=True).start()
        [end] = closed([sock], timeout=1 + MARGIN_S, since=start)
    assert end is not None and end.status == 408 and 0.9 <= end.seconds
    assert json.loads(end.reply.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "request_timeout"


def test_an_endless_request_head_is_refused_at_16_kib(server):
    with socket.create_connection((HOST, server.port), timeout=10) as sock:
        start = time.monotonic()
        try:
            sock.sendall(HEAD + b"\r\n" + b"X-More: " + b"b" * (limits.MAX_HEAD_BYTES + 1024))
        except OSError:  # the server may close while we still send
            pass
        [end] = closed([sock], timeout=MARGIN_S, since=start)
    # 431 from limits.py; 400 from h11, which stops at the same size; None: reset before we read it
    assert end is not None and end.seconds < 0.9 and end.status in (400, 431, None)


def test_no_cors_headers_without_cors_origins(server):
    preflight = httpx.options(f"{server.url}/v1/completions", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
    post = httpx.post(f"{server.url}/v1/completions", json={"prompt": "Hi", "max_tokens": 1}, headers={"Origin": ORIGIN})
    assert post.status_code == 200 and preflight.status_code == 405
    assert not any(h.startswith("access-control-") for h in [*preflight.headers, *post.headers])


@pytest.mark.slow  # a server of its own per stack, flooded (~5 s)
@pytest.mark.parametrize("stack", STACKS)
def test_connections_beyond_max_connections_get_503_at_once_and_the_server_recovers(stack, plain_uvicorn):
    s = serve_on(stack, plain_uvicorn, "--max-connections", "20", "--read-timeout", "1", "--slots", "1", "--threads", "1", open_files=1024)
    try:
        began = time.monotonic()
        ends = closed(half_sent(HOST, s.port, 40), timeout=1 + MARGIN_S, since=began)
        assert None not in ends
        at_once = [e for e in ends if e.seconds < 0.9]
        assert len(at_once) >= 20 and all(e.status in (503, None) for e in at_once)
        assert any(e.status == 503 for e in at_once)
        assert httpx.get(f"{s.url}/health", timeout=5).status_code == 200
    finally:
        assert s.stop() == 0
    lines = s.log.all()
    assert sum("--max-connections 20" in line for line in lines) == 1  # one line, not one per socket
    assert not any("socket.accept()" in line or "Traceback" in line for line in lines)


@pytest.mark.slow  # 1,030 connections per stack, waits out the read timeout (~15 s)
@pytest.mark.parametrize("stack", STACKS)
def test_1030_half_sent_requests_under_a_1024_descriptor_limit_neither_lock_out_nor_flood_the_log(stack, plain_uvicorn):
    s = serve_on(stack, plain_uvicorn, "--read-timeout", "1", "--slots", "1", "--threads", "1", open_files=1024)
    try:
        began = time.monotonic()
        attack = half_sent(HOST, s.port, 1030)
        during = httpx.get(f"{s.url}/health", timeout=5)  # answered, not hung: 503 while the cap is full
        assert during.status_code in (200, 503)
        ends = closed(attack, timeout=1 + MARGIN_S, since=began)
        assert None not in ends, f"{ends.count(None)} of 1030 sockets still open"
        assert httpx.get(f"{s.url}/health", timeout=5).status_code == 200
        print(f"1030 half-sent: {sum(e.status == 503 for e in ends)} got 503, {sum(e.status == 408 for e in ends)} got 408, "
              f"all closed by {max(e.seconds for e in ends):.2f} s; stderr {len(s.log.lines)} lines")
    finally:
        assert s.stop() == 0
    lines = s.log.all()
    assert not any("socket.accept()" in line or "out of system resource" in line or "Traceback" in line for line in lines)
    assert len(lines) < 10, "".join(lines[:20])


REFUSED = [
    (["--api-key", ""], {}, "--api-key is empty"),
    ([], {"GPT2ONNX_API_KEY": ""}, "$GPT2ONNX_API_KEY is empty"),
    (["--api-key", "clé"], {}, "not printable ASCII"),
    (["--api-key", "two words"], {}, "not printable ASCII or is a space"),
    (["--api-key-file", "/no/such/keys"], {}, "cannot read --api-key-file /no/such/keys"),
    (["--max-connections", "0"], {}, "--max-connections must be >= 1"),
    (["--read-timeout", "0"], {}, "--read-timeout must be a number of seconds > 0"),
    (["--read-timeout", "nan"], {}, "--read-timeout must be"),
    (["--cors-origins", "https://app.example.com/"], {}, "no path or trailing /"),
    (["--ray", "--port", "8000", "--api-key-file", "/no/such/keys"], {}, "--api-key-file does not work with --ray"),
    (["--ray", "--port", "8000", "--max-connections", "10"], {}, "--max-connections does not work with --ray"),
]


@pytest.mark.parametrize("args,env,message", REFUSED, ids=[r[2] for r in REFUSED])
def test_unusable_keys_and_flags_are_refused_in_one_line(args, env, message):
    done = subprocess.run([*CLI, "serve", *args], capture_output=True, text=True, timeout=60, env={**os.environ, **env})
    assert done.returncode == 2 and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_a_key_file_without_keys_and_a_cap_over_the_descriptor_limit_are_refused(tmp_path):
    empty = tmp_path / "keys"
    empty.write_text("# only a comment\n\n")
    runs = {
        "lists no keys": [*CLI, "serve", "--api-key-file", str(empty)],
        "does not fit under this process's open-file limit of 1024": [*CLI, "serve", "--max-connections", "1000"],
    }
    for message, command in runs.items():
        done = subprocess.run(command, capture_output=True, text=True, timeout=60,
                              preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024)))
        assert done.returncode == 2 and message in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_a_key_file_counts_as_a_key_beyond_loopback(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("k1\n")
    # Past the key check, it stops at the missing model: nothing listens on 0.0.0.0.
    done = subprocess.run([*CLI, "serve", "--host", "0.0.0.0", "--api-key-file", str(keys), "--model", "/no/such/folder"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no such model folder" in done.stderr and "without an API key" not in done.stderr


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    keys = tmp_path_factory.mktemp("keys") / "keys.txt"
    keys.write_text("# team keys\nalpha-1\n\nbeta-2\n")
    s = Server("--api-key-file", str(keys), "--api-key", "static-0", "--cors-origins", f"{ORIGIN},http://localhost:5173", "--slots", "1", "--threads", "1")
    s.keys, s.log = keys, Stderr(s)
    yield s
    assert s.stop() == 0


def _status(server: Server, key: str) -> int:
    return httpx.get(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code


def test_every_listed_key_passes_a_wrong_one_gets_401_and_sighup_rereads_the_file(secured):
    assert [_status(secured, k) for k in ("alpha-1", "beta-2", "static-0", "wrong", "alpha-")] == [200, 200, 200, 401, 401]
    secured.keys.write_text("gamma-3\n")
    secured.proc.send_signal(signal.SIGHUP)
    assert "1 keys" in secured.log.wait_for("re-read --api-key-file")
    assert [_status(secured, k) for k in ("alpha-1", "beta-2", "gamma-3", "static-0")] == [401, 401, 200, 200]
    secured.keys.write_text("# emptied by mistake\n")
    secured.proc.send_signal(signal.SIGHUP)
    assert "lists no keys" in secured.log.wait_for("kept the API keys in force")
    assert [_status(secured, k) for k in ("gamma-3", "alpha-1")] == [200, 401]
    assert secured.proc.poll() is None


def test_cors_headers_only_for_the_listed_origins(secured):
    url = f"{secured.url}/v1/completions"
    asked = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
    allowed = httpx.options(url, headers={"Origin": ORIGIN, **asked})
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == ORIGIN
    assert {"authorization", "content-type"} <= {h.strip().lower() for h in allowed.headers["access-control-allow-headers"].split(",")}
    assert "POST" in allowed.headers["access-control-allow-methods"]
    other = httpx.options(url, headers={"Origin": "https://evil.example.net", **asked})
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
    body = {"prompt": "Hi", "max_tokens": 1}
    post = httpx.post(url, json=body, headers={"Origin": ORIGIN, "Authorization": "Bearer static-0"})
    assert post.status_code == 200 and post.headers["access-control-allow-origin"] == ORIGIN
    denied = httpx.post(url, json=body, headers={"Origin": ORIGIN})  # a browser can read the 401, too
    assert denied.status_code == 401 and denied.headers["access-control-allow-origin"] == ORIGIN
    foreign = httpx.post(url, json=body, headers={"Origin": "https://evil.example.net", "Authorization": "Bearer static-0"})
    assert foreign.status_code == 200 and "access-control-allow-origin" not in foreign.headers
