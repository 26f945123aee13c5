"""A rate-limiting HTTP proxy: a token bucket of R requests a second, the store's own 429 beyond it.

Run by the fleet benchmark as ``python -m bench.fleet._proxy STORE UPSTREAM``
(STORE: ``vault`` or ``aws``): prints its port on the first line of stdout,
then serves until stdin closes. A process of its own, so that its work never
shares a GIL with the benchmark's bookkeeping and its CPU can be read apart.

Every request takes a token from the bucket (refilled at ``rate`` a second,
holding at most ``burst``); with one it is forwarded to ``UPSTREAM`` on a
kept-alive connection, without one it gets the store's own throttling
answer, in the form its SDK parses:

- ``vault``: ``429`` with Vault's JSON (``{"errors": ["request path ...: rate
  limit quota exceeded"]}``) and the headers of a Vault rate-limit quota with
  ``enable_rate_limit_response_headers``: ``Retry-After`` (whole seconds until
  the bucket holds a token), ``X-Ratelimit-Limit``, ``-Remaining``, ``-Reset``;
- ``aws``: ``400`` with ``{"__type": "ThrottlingException", "message": "Rate
  exceeded"}`` in the JSON protocol of Secrets Manager and SSM (what AWS
  sends: no ``Retry-After``).

``POST /_fleet/limit`` with ``{"rate": R, "burst": B}`` (``rate`` null: no
limit) sets the bucket and clears the counts; ``GET /_fleet/stats`` returns
them: requests seen, forwarded, throttled, and the time of each forwarded one.
"""

from __future__ import annotations

import http.client
import json
import math
import sys
import threading
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

from secretinit.testing.servers import LoopbackServer, QuietHandler

# Headers that belong to one connection, not to the message (RFC 9110 7.6.1).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` held; ``rate`` None lets everything through."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.set(None, 1.0)

    def set(self, rate: float | None, burst: float) -> None:
        with self.lock:
            self.rate, self.burst = rate, burst
            self.tokens, self.last = burst, time.monotonic()

    def take(self) -> float | None:
        """None when a token was taken, else the seconds until one is there."""
        with self.lock:
            if self.rate is None:
                return None
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens >= 1:
                self.tokens -= 1
                return None
            return (1 - self.tokens) / self.rate


class Stats:
    """What the proxy saw since the last reset."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.started = time.monotonic()
            self.seen = self.forwarded = self.throttled = 0
            self.forwarded_at: list[float] = []

    def count(self, forwarded: bool) -> None:
        with self.lock:
            self.seen += 1
            if forwarded:
                self.forwarded += 1
                self.forwarded_at.append(round(time.monotonic() - self.started, 4))
            else:
                self.throttled += 1

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "seen": self.seen,
                "forwarded": self.forwarded,
                "throttled": self.throttled,
                "forwarded_at": list(self.forwarded_at),
            }


def throttled_answer(
    store: str, path: str, wait: float, rate: float
) -> tuple[int, dict[str, str], bytes]:
    """The store's own answer to a request beyond its rate limit."""
    if store == "vault":
        body = json.dumps({"errors": [f'request path "{path[4:]}": rate limit quota exceeded']})
        reset = str(math.ceil(wait))
        headers = {
            "Content-Type": "application/json",
            "Retry-After": reset,
            "X-Ratelimit-Limit": f"{rate:g}",
            "X-Ratelimit-Remaining": "0",
            "X-Ratelimit-Reset": reset,
        }
        return 429, headers, (body + "\n").encode()
    body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"})
    headers = {
        "Content-Type": "application/x-amz-json-1.1",
        "x-amzn-RequestId": str(uuid.uuid4()),
    }
    return 400, headers, body.encode()


class FleetServer(LoopbackServer):
    request_queue_size = 1024  # a fleet connects at once


def make_handler(store: str, upstream: str, bucket: TokenBucket, stats: Stats) -> type:
    target = urlsplit(upstream)
    local = threading.local()

    class Handler(QuietHandler):  # keep-alive, no delayed ACK, no line per request
        def handle_any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.path.startswith("/_fleet/"):
                self.control(body)
                return
            wait = bucket.take()
            stats.count(forwarded=wait is None)
            if wait is not None:
                status, refusal, answer = throttled_answer(store, self.path, wait, bucket.rate or 0)
                self.reply(status, list(refusal.items()), answer)
                return
            self.reply(*self.forward(body))

        def forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            for attempt in range(2):  # once more on a fresh connection the upstream closed
                connection = getattr(local, "connection", None)
                if connection is None:
                    connection = http.client.HTTPConnection(
                        target.hostname or "127.0.0.1", target.port, timeout=60
                    )
                    local.connection = connection
                try:
                    connection.request(self.command, self.path, body or None, headers)
                    response = connection.getresponse()
                    answer = response.read()
                except (OSError, http.client.HTTPException):
                    connection.close()
                    local.connection = None
                    if attempt:
                        raise
                    continue
                kept = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
                return response.status, kept, answer
            raise AssertionError("unreachable")

        def reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response_only(status)
            for name, value in headers:
                if name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def control(self, body: bytes) -> None:
            if self.command == "POST" and self.path == "/_fleet/limit":
                limit = json.loads(body)
                bucket.set(limit["rate"], limit.get("burst") or 1.0)
                stats.reset()
                answer = b"{}"
            else:
                answer = json.dumps(stats.snapshot()).encode()
            self.reply(200, [("Content-Type", "application/json")], answer)

        def do_GET(self) -> None:  # noqa: N802 - http.server dispatches on this name
            self.handle_any()

        def do_POST(self) -> None:  # noqa: N802 - http.server dispatches on this name
            self.handle_any()

        def do_PUT(self) -> None:  # noqa: N802 - http.server dispatches on this name
            self.handle_any()

        def do_DELETE(self) -> None:  # noqa: N802 - http.server dispatches on this name
            self.handle_any()

        def do_LIST(self) -> None:  # noqa: N802 - Vault's own HTTP method
            self.handle_any()

    return Handler


def main() -> None:
    store, upstream = sys.argv[1], sys.argv[2]
    if store not in ("vault", "aws"):
        raise SystemExit(f"unknown store {store!r}: vault or aws")
    server = FleetServer(make_handler(store, upstream, TokenBucket(), Stats()))
    server.start()
    print(server.port, flush=True)
    sys.stdin.read()  # until the benchmark closes it
    server.stop()


if __name__ == "__main__":
    main()
