"""Socket-layer limits of `gpt2onnx serve`: a deadline for request heads, a cap on
open connections, and the open-file limit both need.

Which layer protects what:

    a head sent slowly or never (slowloris)   here: --read-timeout, then 408 and close
    a head that never ends (endless headers)  here: MAX_HEAD_BYTES, then 431 and close (h11:
                                              uvicorn's h11_max_incomplete_event_size, 400)
    too many sockets, idle or not            here: --max-connections, checked as each
                                              is accepted: 503 and close, before a byte is read;
                                              uvicorn's backlog sized by backlog() below
    an idle keep-alive connection            uvicorn's timeout_keep_alive (KEEP_ALIVE_S)
    a large request body                     errors.BodyLimit: 413 over 1 MiB
    more requests than slots                 the scheduler's --max-queue: 429

uvicorn has no deadline for a request head, and its limit_concurrency is not used:
it counts connections only once a complete head arrives, so sockets that never
send one are never refused by it, and accept() goes on taking descriptors until
there are none left (then asyncio logs every failed accept()). The cap here acts
in connection_made instead, so the descriptors held stay near --max-connections.
Near, not at: asyncio accepts up to `backlog` sockets in one pass of its loop and
the cap closes the excess a few passes later, so backlog() keeps a few passes'
worth of sockets under the open-file limit too.

GuardedProtocol is a mixin over uvicorn's HTTP protocol class: protocol_class()
applies it to whichever of httptools or h11 uvicorn's "auto" would pick, and both
name the same attributes (connections, cycle, transport, loop) it relies on.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from gpt2onnx.runtime.errors import UsageError

log = logging.getLogger("gpt2onnx.serve")

# 512: far more than the slots and queue will serve at once (4 + 64 by default), so a
# real client rarely meets it, and under half of the common 1,024-descriptor limit.
MAX_CONNECTIONS = 512
READ_TIMEOUT_S = 10.0  # time for a request head: a slow phone link sends one in well under a second
KEEP_ALIVE_S = 5  # uvicorn's default: an idle connection between two requests is closed after this
MAX_HEAD_BYTES = 16 * 1024  # request line + headers (ours need under 1 KiB); h11's and Node's limit too
RESERVED_FDS = 64  # descriptors the server needs besides connections: model files, logs, loop, listener
ACCEPT_PASSES = 4  # loop passes a refused socket lives: accept, transport, connection_made, close
MIN_BACKLOG, MAX_BACKLOG = 16, 2048  # bounds of uvicorn's backlog (2048, its default, when descriptors allow)
WARN_EVERY_S = 60.0  # a flood of refused connections logs one line a minute, not one per socket


@dataclass(frozen=True)
class Limits:
    """The socket-layer limits (`--max-connections`, `--read-timeout`)."""

    max_connections: int = MAX_CONNECTIONS
    read_timeout: float = READ_TIMEOUT_S


def _response(status: int, reason: str, message: str, code: str, extra: bytes = b"") -> bytes:
    """A whole HTTP response in OpenAI's error shape that closes the connection."""
    from .errors import body  # FastAPI's import: not when the CLI only parses its flags

    payload = json.dumps(body(status, message, "server_error" if status >= 500 else "invalid_request_error", code=code)).encode()
    head = f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(payload)}\r\nconnection: close\r\n"
    return head.encode() + extra + b"\r\n" + payload


class GuardedProtocol:
    """Mixin for uvicorn's HttpToolsProtocol or H11Protocol: the cap, the head deadline
    and the head size. `limits` is set by protocol_class()."""

    limits: Limits = Limits()
    _last_warning = float("-inf")  # class-wide: one connection's log line stands for all
    _read_timer = None
    _refused = False
    _head_bytes = 0

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        open_now = len(self.connections)  # uvicorn's set of this server's connections, this one included
        if open_now > self.limits.max_connections:
            self._refused = True
            self._warn(f"{open_now - 1} connections are open (--max-connections {self.limits.max_connections}): new ones get 503 until some close")
            return self._answer(self._busy)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._refused:  # closing: the request is not ours to read
            return
        cycle = self.cycle
        super().data_received(data)
        if self.transport.get_protocol() is not self:  # upgraded to a WebSocket: no longer ours
            self._disarm()
        elif self.cycle is not cycle:  # a complete head: the request is the app's now
            self._disarm()
        elif self.cycle is None or self.cycle.response_complete:  # waiting for a head
            if self.transport.is_closing():
                return
            if self._read_timer is None:  # the first bytes of a keep-alive connection's next request
                self._arm()
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._disarm()
                self._answer(self._too_large)

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._head_bytes = 0
        self._read_timer = self.loop.call_later(self.limits.read_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _timed_out(self) -> None:
        self._read_timer = None
        if not self.transport.is_closing():
            self._answer(self._timeout)

    def _answer(self, response: bytes) -> None:
        """Write a closing response and close; abort instead if the peer does not read it,
        so a client that never reads cannot keep the socket (and its descriptor) open."""
        self.transport.write(response)
        if self.transport.get_write_buffer_size():
            self.transport.abort()
        else:
            self.transport.close()

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - GuardedProtocol._last_warning >= WARN_EVERY_S:
            GuardedProtocol._last_warning = now
            log.warning("%s", message)


def protocol_class(limits: Limits, base: type | None = None) -> type:
    """uvicorn's HTTP protocol (`base`, default the one its "auto" picks) with GuardedProtocol's
    limits: pass it as uvicorn.Config(http=...)."""
    if base is None:
        from uvicorn.protocols.http.auto import AutoHTTPProtocol as base
    cap = limits.max_connections
    return type(
        f"Guarded{base.__name__}",
        (GuardedProtocol, base),
        {
            "limits": limits,
            "_busy": _response(503, "Service Unavailable", f"the server has {cap} connections open, its limit (--max-connections): retry in a moment", "too_many_connections", b"retry-after: 1\r\n"),
            "_timeout": _response(408, "Request Timeout", f"the request head did not arrive within {limits.read_timeout:g} s (--read-timeout): send the request at once", "request_timeout"),
            "_too_large": _response(431, "Request Header Fields Too Large", f"the request head is over {MAX_HEAD_BYTES} bytes: send shorter headers", "headers_too_large"),
        },
    )


def raise_open_file_limit() -> int | None:
    """Raise the soft RLIMIT_NOFILE to the hard one, as nginx's worker_rlimit_nofile does, so
    --max-connections may use what the system allows; returns the soft limit now in force
    (None: unlimited, or a system without the limit)."""
    try:
        import resource
    except ImportError:  # Windows: no such limit
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An unlimited hard limit cannot be the soft one (Linux caps it at fs.nr_open, macOS at OPEN_MAX).
    for want in ([hard] if hard != resource.RLIM_INFINITY else [1 << 20, 10240]):
        if soft != resource.RLIM_INFINITY and want > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
                break
            except (ValueError, OSError):
                continue
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def check_fits(max_connections: int, open_files: int | None) -> None:
    """Refuse a --max-connections that would leave accept() without descriptors."""
    kept = RESERVED_FDS + ACCEPT_PASSES * MIN_BACKLOG
    if open_files is not None and max_connections > open_files - kept:
        raise UsageError(
            f"--max-connections {max_connections} does not fit under this process's open-file limit of {open_files} "
            f"(one per connection, {kept} kept for the server and for sockets being accepted): "
            f"use at most {max(open_files - kept, 0)}, or raise the hard limit (ulimit -Hn)"
        )


def backlog(max_connections: int, open_files: int | None) -> int:
    """uvicorn's backlog: the listen queue, and what asyncio accepts in one pass. The sockets
    beyond the cap, ACCEPT_PASSES passes of them, must fit in what the cap leaves free."""
    if open_files is None:
        return MAX_BACKLOG
    free = open_files - RESERVED_FDS - max_connections
    return max(MIN_BACKLOG, min(MAX_BACKLOG, free // ACCEPT_PASSES))
