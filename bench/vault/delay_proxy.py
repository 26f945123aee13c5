"""A TCP proxy that delays every chunk by ``delay`` seconds each way: a network in a box.

Loopback answers in microseconds, which hides what concurrency buys on a real
network. With 1 ms each way, every request/response exchange costs 2 ms more,
as a client in one rack talking to a Vault in the next would see. It also
counts the HTTP requests it carries (by request line), so the benchmark can
show how many reads each contender makes.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import Counter

_REQUEST_LINE = re.compile(rb"^(GET|POST|PUT|LIST|DELETE|HEAD) (/v1/[^ ?]*)")


class DelayProxy:
    """Listens on 127.0.0.1:``port`` (picked freely) and forwards to ``upstream``."""

    def __init__(self, upstream_port: int, delay: float) -> None:
        self.upstream_port = upstream_port
        self.delay = delay
        self.requests: Counter[str] = Counter()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="delay-proxy", daemon=True)

    def start(self) -> DelayProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the delay proxy did not start")
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._connection, "127.0.0.1", 0, backlog=1024)
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _connection(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        # A new connection costs a round trip before its first byte, as a TCP handshake does.
        await asyncio.sleep(2 * self.delay)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.upstream_port
            )
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            self._pump(client_reader, upstream_writer, count=True),
            self._pump(upstream_reader, client_writer, count=False),
        )

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: bool
    ) -> None:
        # Chunks are queued with the time they are due, then written in order:
        # a constant delay keeps the stream's order and adds no jitter of its own.
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, chunk = await queue.get()
                if not chunk:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(chunk)
                await writer.drain()
            writer.close()

        delivering = asyncio.create_task(deliver())
        try:
            while chunk := await reader.read(65536):
                if count:
                    match = _REQUEST_LINE.match(chunk)
                    if match:
                        self.requests[match.group(2).decode()] += 1
                queue.put_nowait((time.monotonic() + self.delay, chunk))
        except OSError:
            pass
        queue.put_nowait((0.0, b""))
        try:
            await delivering
        except OSError:
            pass
