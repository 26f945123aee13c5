"""Helpers for the refresh tests of the core and of every provider.

A refreshing ``secretinit`` runs for many seconds: its log goes to a file
(:class:`LogFile`) that the test reads as it grows, and the application is
``tests/programs/secret_reader.py``, which reports digests of its files on
each SIGHUP, never a value.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

from tests.processes import LINE_TIMEOUT, TESTS, Running

SECRET_READER = str(TESTS / "programs" / "secret_reader.py")


def reader_app(*names: str) -> list[str]:
    """The command line of the application that reports its files' digests."""
    return [sys.executable, SECRET_READER, *names]


def digest(value: str | bytes) -> str:
    """What ``secret_reader.py`` prints for a file holding ``value``."""
    data = value.encode() if isinstance(value, str) else value
    return hashlib.sha256(data).hexdigest()[:16]


def files_line(**values: str | bytes) -> str:
    """The ``files`` line ``secret_reader.py`` prints for these values."""
    return "files " + " ".join(f"{name}={digest(value)}" for name, value in values.items())


def generations(directory: str | Path) -> list[str]:
    """The generation directories of a secret directory."""
    return sorted(name for name in os.listdir(directory) if name.startswith("..2"))


class LogFile:
    """secretinit's stderr in a file, read as it grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stream = open(path, "wb")  # noqa: SIM115 - handed to Popen, closed by close()
        self.offset = 0

    def text(self) -> str:
        return self.path.read_text(errors="replace")

    def wait_for(self, needle: str, timeout: float = LINE_TIMEOUT) -> str:
        """The first line after the last one found that contains ``needle``."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            found = text.find(needle, self.offset)
            if found >= 0:
                end = text.find("\n", found)
                if end >= 0:
                    start = text.rfind("\n", 0, found) + 1
                    self.offset = end + 1
                    return text[start:end]
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"no log line with {needle!r} after offset {self.offset}:\n{text}"
                )
            time.sleep(0.05)

    def close(self) -> None:
        self.stream.close()


def wait_until(condition: object, timeout: float = LINE_TIMEOUT, what: str = "condition") -> None:
    """Poll ``condition()`` until it is true."""
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout} s")
        time.sleep(0.05)


def refreshing(
    options: list[str], env: dict[str, str], names: list[str], log: LogFile, **kwargs: object
) -> Running:
    """``secretinit run`` with debug JSON logs into ``log``, supervising the reader app."""
    logging = ["--log-format", "json", "--log-level", "debug"]
    return Running(
        ["run", *logging, *options, "--", *reader_app(*names)],
        env,
        stderr=log.stream,
        **kwargs,
    )
