"""Serve HTTP/1.1 keep-alive connections, which werkzeug's development server refuses.

werkzeug (3.x) ends every response with ``Connection: close``: its handler cannot tell where a
request body it did not read ends, so it never reads a second request from a connection. Every
call to the emulator then paid for a TCP connection and a new server thread, and the thread's
start waited for the GIL behind whichever requests were running. Measured under the drain
benchmark (RFEMU_TIMING_FILE with each request's client port): 3,303 connections for 3,304
requests.

KeepAliveHandler reads a request's whole body (by its Content-Length) before the application
runs, so the next request on the connection starts where it should, and sends the response with
its Content-Length and without ``Connection: close``. One thread serves a connection for as long
as the client keeps it (the SDK's idle connections time out after 90 s). Requests it cannot frame
that way (a chunked or Expect: 100-continue body, HTTP/1.0, a client asking to close, an
unreadable length) go to werkzeug's own handling, which closes the connection as before.
Responses are buffered whole: moto builds every response before returning it, long polls
included. RFEMU_NO_KEEPALIVE=1 in the launcher's environment serves with werkzeug's own handler,
for comparisons.
"""
from __future__ import annotations

import io
import sys
import traceback
from typing import Any

from werkzeug.serving import WSGIRequestHandler

# A body larger than this is left to werkzeug (and the connection closed): the emulator's largest
# requests are CloudFormation templates, well under it.
MAX_BUFFERED_BODY = 64 << 20


class KeepAliveHandler(WSGIRequestHandler):
    """WSGIRequestHandler that keeps HTTP/1.1 connections open between requests."""

    protocol_version = "HTTP/1.1"
    # The headers and the body go out in two writes. With Nagle's algorithm on, the body waits
    # for the client's delayed ACK of the headers (40 ms on Linux), which a closed connection
    # used to hide.
    disable_nagle_algorithm = True

    def _body_length(self) -> int | None:
        """The request body's length when the request can be framed on a kept-alive connection."""
        if self.request_version != "HTTP/1.1" or self.close_connection:
            return None
        if self.headers.get("Transfer-Encoding") or self.headers.get("Expect"):
            return None
        raw = self.headers.get("Content-Length")
        if raw is None:
            return 0
        try:
            n = int(raw)
        except ValueError:
            return None
        if n < 0 or n > MAX_BUFFERED_BODY:
            return None
        return n

    def run_wsgi(self) -> None:
        n = self._body_length()
        if n is None:
            super().run_wsgi()  # sends Connection: close, which ends the connection
            return
        body = self.rfile.read(n) if n else b""
        if len(body) != n:  # the client went away mid-body
            self.close_connection = True
            return
        environ = self.make_environ()
        environ["wsgi.input"] = io.BytesIO(body)
        self.environ = environ

        started: list[Any] = []
        chunks: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if exc_info is not None:
                exc_info = None  # nothing is sent before the application returns: start over
            elif started:
                raise AssertionError("start_response called twice")
            started[:] = [status, headers]
            return chunks.append

        try:
            result = self.server.app(environ, start_response)
            try:
                for chunk in result:
                    chunks.append(chunk)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
            if not started:
                raise RuntimeError("the application returned without calling start_response")
        except Exception:  # noqa: BLE001 - answer 500 and close, as werkzeug does
            print(f"emulator: error on {self.command} {self.path}:\n{traceback.format_exc()}",
                  file=sys.stderr, flush=True)
            started[:] = ["500 INTERNAL SERVER ERROR", [("Content-Type", "text/plain; charset=utf-8")]]
            chunks[:] = [b"internal error in the emulator"]
            self.close_connection = True

        status, headers = started
        code_str, _, reason = status.partition(" ")
        code = int(code_str)
        payload = b"".join(chunks)
        self.send_response(code, reason)
        declared = None
        for key, value in headers:
            lower = key.lower()
            if lower == "content-length":
                declared = value
                continue
            if lower in ("connection", "transfer-encoding"):
                continue
            self.send_header(key, value)
        has_body = self.command != "HEAD" and not (100 <= code < 200 or code in (204, 304))
        if has_body:
            self.send_header("Content-Length", str(len(payload)))
        elif declared is not None:
            self.send_header("Content-Length", declared)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if has_body and payload:
            self.wfile.write(payload)
        self.wfile.flush()

