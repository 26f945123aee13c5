"""Free loopback ports for the servers a provider's tests start."""

from __future__ import annotations

import socket

__all__ = ["free_port"]


def free_port(pair: bool = False) -> int:
    """A free TCP port on 127.0.0.1; with ``pair``, one whose successor is free too
    (OpenBao's dev server also binds P+1)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if not pair:
            return port
        if port < 65535:
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port pair found")
