"""Threaded HTTP(S) servers on loopback, the base of the suites' fakes of cloud APIs.

The Key Vault and Secret Manager fakes serve their APIs over TLS to the real
SDKs, which keep connections alive and send requests concurrently; this is
what they share: the TLS handshake in each connection's own thread, a
backlog that takes a burst of connects, kept-alive connections that end
when the fake stops (so that a stopped server looks gone), and quiet logs
(the tests search captured output for planted values).
"""

from __future__ import annotations

import http.server
import json
import socket
import ssl
import threading
from typing import Any

__all__ = ["LoopbackServer", "QuietHandler"]


class LoopbackServer(http.server.ThreadingHTTPServer):
    """``handler`` on a free port of 127.0.0.1, over TLS when given a server ``context``."""

    daemon_threads = True
    request_queue_size = 128  # a burst of concurrent connects must not hit a full backlog

    def __init__(
        self,
        handler: type[http.server.BaseHTTPRequestHandler],
        context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.context = context
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self.server_address[1])

    def start(self) -> None:
        """Serve from a daemon thread."""
        # A short poll: stop() waits for the loop to notice.
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        """Stop serving, close the listening socket and every kept-alive connection."""
        self.shutdown()
        self.server_close()
        self.close_connections()

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake happens here, in the connection's own thread, so that
        # one slow handshake does not hold up the accept loop.
        if self.context is not None:
            try:
                request = self.context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        with self.connections_lock:
            self.connections.add(request)
        try:
            super().finish_request(request, client_address)
        finally:
            with self.connections_lock:
                self.connections.discard(request)
            if self.context is not None:
                # The TLS socket took over the connection: socketserver only
                # closes the original, now detached, socket object.
                self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: a client that gave up (a deadline in a test) closes its connection early."""

    def close_connections(self) -> None:
        """End every kept-alive connection: a stopped server must look gone to its clients."""
        with self.connections_lock:
            for connection in self.connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """A keep-alive handler that logs nothing and answers JSON or any body."""

    protocol_version = "HTTP/1.1"  # keep-alive, as cloud APIs serve
    # Without this, a keep-alive response waits ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests search captured output for planted values."""

    def send_body(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        """Answer ``status`` with ``body`` and ``headers``."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        """Answer ``status`` with ``body`` as JSON."""
        data = json.dumps(body).encode()
        self.send_body(status, data, "application/json; charset=utf-8", headers)
