"""LoggingProxy: a small reverse proxy on another loopback port between the clients and the server
that keeps every request body the clients send and every answer, streams passed through as they
come."""

from __future__ import annotations

import http.client
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "content-length", "host"}


class LoggingProxy:
    """A reverse proxy on 127.0.0.1:(a free port) to the server at 127.0.0.1:upstream. Each request is
    kept in `log` as {tag, method, path, body, user_agent, status, response}; `tag` names who calls
    now. Answers pass through as they come, so streams stay streams; `response` keeps their first 4000
    characters. timeout_s bounds each request to the server."""

    def __init__(self, upstream: int, timeout_s: float):
        self.upstream, self.timeout_s, self.tag, self.log = upstream, timeout_s, "", []
        self.idle = threading.Condition()
        self.in_flight = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet: the log is kept, not printed
                pass

            def do_GET(self):
                proxy.forward(self)

            do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def forward(self, h: BaseHTTPRequestHandler) -> None:
        with self.idle:
            self.in_flight += 1
        entry = {"tag": self.tag, "method": h.command, "path": h.path, "body": None,
                 "user_agent": h.headers.get("user-agent", ""), "status": 599, "response": ""}
        head = bytearray()
        try:
            body = _read_body(h)
            try:
                entry["body"] = json.loads(body) if body else None
            except ValueError:
                entry["body"] = body.decode("utf-8", "replace")
            upstream = http.client.HTTPConnection("127.0.0.1", self.upstream, timeout=self.timeout_s)
            headers = {k: v for k, v in h.headers.items() if k.lower() not in HOP_BY_HOP}
            upstream.request(h.command, h.path, body=body, headers=headers)
            r = upstream.getresponse()
            entry["status"] = r.status
            h.send_response_only(r.status, r.reason)
            for k, v in r.getheaders():
                if k.lower() not in HOP_BY_HOP:
                    h.send_header(k, v)
            if r.getheader("content-length") is not None:
                head += r.read()
                h.send_header("Content-Length", str(len(head)))
                h.end_headers()
                h.wfile.write(head)
            else:  # re-chunked piece by piece: a stream reaches the client as the server sends it
                h.send_header("Transfer-Encoding", "chunked")
                h.end_headers()
                while piece := r.read1(65536):
                    h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    h.wfile.flush()
                    if len(head) < 4000:
                        head += piece
                h.wfile.write(b"0\r\n\r\n")
            h.wfile.flush()
            upstream.close()
        except (OSError, http.client.HTTPException) as e:  # the client or the server went away
            head += f"\n[proxy: {type(e).__name__}: {e}]".encode()
            h.close_connection = True
        finally:
            entry["response"] = head[:4000].decode("utf-8", "replace")
            with self.idle:
                self.log.append(entry)
                self.in_flight -= 1
                self.idle.notify_all()

    def take(self) -> list[dict]:
        """The requests since the last take, once none is still being answered (5 s at most)."""
        with self.idle:
            self.idle.wait_for(lambda: self.in_flight == 0, timeout=5)
            out, self.log = self.log, []
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a client that hangs up on a kept-alive connection
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _read_body(h: BaseHTTPRequestHandler) -> bytes:
    if h.headers.get("transfer-encoding", "").lower() == "chunked":
        out = bytearray()
        while size := int(h.rfile.readline().split(b";")[0].strip() or b"0", 16):
            out += h.rfile.read(size)
            h.rfile.readline()
        while h.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
            pass
        return bytes(out)
    return h.rfile.read(int(h.headers.get("content-length") or 0))
