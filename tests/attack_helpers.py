"""Attacks on a server's sockets, for the server tests: slowloris, half-sent requests,
and `closed`, which says when (and how) the server closed each socket.

Only ever aimed at 127.0.0.1. They hold many sockets: raise_open_files() first.
"""

from __future__ import annotations

import resource
import selectors
import socket
import threading
import time
from dataclasses import dataclass

# A request head that is never finished: its blank line never comes.
HEAD = b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Padding: " + b"a" * 200


def raise_open_files(want: int) -> None:
    """Let this process hold `want` descriptors (up to its hard limit), for the attack's sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want if hard == resource.RLIM_INFINITY else min(want, hard), hard))


def _connect(host: str, port: int, first: bytes) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=5)
    if first:
        sock.sendall(first)
    return sock


def half_sent(host: str, port: int, n: int, head: bytes = HEAD[:40]) -> list[socket.socket]:
    """`n` connections that each sent the start of a request head, then nothing."""
    return [_connect(host, port, head) for _ in range(n)]


def slowloris(host: str, port: int, n: int, interval: float = 0.2, head: bytes = HEAD) -> list[socket.socket]:
    """`n` connections that send a request head one byte every `interval` seconds and never
    finish it. A daemon thread feeds them until the server closes each (or the head runs out)."""
    sockets = [_connect(host, port, head[:1]) for _ in range(n)]

    def feed() -> None:
        alive = list(sockets)
        for i in range(1, len(head)):
            time.sleep(interval)
            for sock in list(alive):
                try:
                    sock.send(head[i : i + 1])
                except OSError:  # the server closed it (or the test did)
                    alive.remove(sock)
            if not alive:
                return

    threading.Thread(target=feed, daemon=True).start()
    return sockets


@dataclass
class Closed:
    """How the server ended one connection: after `seconds`, having sent `reply` first."""

    seconds: float
    reply: bytes  # what the server sent before closing (b"" if nothing, or the connection was reset)

    @property
    def status(self) -> int | None:
        return int(self.reply[9:12]) if self.reply.startswith(b"HTTP/1.1 ") else None


def closed(sockets: list[socket.socket], timeout: float, since: float | None = None) -> list[Closed | None]:
    """Wait up to `timeout` seconds for the server to close each socket; for each, how it was
    closed (seconds counted from `since`, a time.monotonic(), default now), or None if still
    open. The sockets are closed on return."""
    start = time.monotonic() if since is None else since
    replies = {sock: b"" for sock in sockets}
    done: dict[socket.socket, Closed] = {}
    with selectors.DefaultSelector() as selector:  # epoll: more than 1,024 sockets
        for sock in sockets:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while len(done) < len(sockets) and time.monotonic() < deadline:
            for key, _ in selector.select(max(0.0, deadline - time.monotonic())):
                sock = key.fileobj
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:  # reset: the server closed with our bytes unread
                    data = b""
                if data:
                    replies[sock] += data
                    continue
                done[sock] = Closed(time.monotonic() - start, replies[sock])
                selector.unregister(sock)
    for sock in sockets:
        sock.close()
    return [done.get(sock) for sock in sockets]
