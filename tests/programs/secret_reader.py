"""An application for the refresh tests: reports what its secret files hold, never a value.

Usage: secret_reader.py NAME...

At start it prints ``started PID`` and a ``files`` line; on each SIGHUP (or
SIGUSR1) a ``SIGHUP`` line and a ``files`` line; on SIGTERM ``stopping``, then
it exits 0. A ``files`` line has ``NAME=DIGEST`` for each NAME: the first 16
hex digits of the SHA-256 of ``$NAME_FILE``'s bytes, ``NAME=missing`` when
it cannot be read, or ``NAME=env:DIGEST`` for a value exported as ``$NAME``.
"""

import hashlib
import os
import signal
import sys
import time


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def files(names: list[str]) -> str:
    parts = []
    for name in names:
        path = os.environ.get(f"{name}_FILE")
        if path is None:
            value = os.environ.get(name)
            parts.append(f"{name}=env:{digest(value.encode())}" if value else f"{name}=missing")
            continue
        try:
            with open(path, "rb") as stream:
                parts.append(f"{name}={digest(stream.read())}")
        except OSError:
            parts.append(f"{name}=missing")
    return "files " + " ".join(parts)


def main() -> None:
    names = sys.argv[1:]
    received: list[int] = []
    for number in (signal.SIGHUP, signal.SIGUSR1, signal.SIGTERM):
        signal.signal(number, lambda n, _f: received.append(n))
    print(f"started {os.getpid()}", flush=True)
    print(files(names), flush=True)
    while True:
        while received:
            number = received.pop(0)
            if number == signal.SIGTERM:
                print("stopping", flush=True)
                sys.exit(0)
            print(signal.Signals(number).name, flush=True)
            print(files(names), flush=True)
        time.sleep(0.02)


if __name__ == "__main__":
    main()
