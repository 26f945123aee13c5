"""The health of a secret directory, and ``secretinit status``, which reads it.

Every run of a refresh series (the start, then each refresh) rewrites
``..secretinit/health`` in the directory's private state directory, one
``key value`` per line: the refresh period, when the series began, when a
fetch last succeeded and was last tried, how many tries failed since the
last success, and which secrets failed (names, never values).

``secretinit status [--dir D] [--max-age DURATION|Nx]`` answers with an exit
status that ``HEALTHCHECK`` and a Kubernetes exec probe understand:

- 0, ready: the first fetch succeeded and the last success is no older
  than the max age (``Nx``: N refresh periods; by default ``3x``);
- 1, not ready (nothing written yet, no such directory, not readable) or
  unhealthy (the last success is too old: the store has been failing, or
  the refreshes stopped);
- 2, bad usage.

A directory written once (without ``--refresh``) has no health record: it
is ready once its ``..data`` link exists, and gets an age limit only from a
``--max-age`` in seconds.

This module is on a probe's path, run every few seconds for the container's
whole life: it imports neither click nor any provider (``__main__`` calls
:func:`status_main` before the CLI is loaded).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping

from secretinit._supervisor import DATA_LINK, STATE_DIRECTORY

HEALTH_FILE = "health"
DEFAULT_MAX_AGE = "3x"
EXIT_READY = 0
EXIT_UNHEALTHY = 1
EXIT_USAGE = 2
USAGE = "usage: secretinit status [--dir DIR] [--max-age DURATION|Nx]"


class Health:
    """One health record: times are seconds since the epoch (several processes read them)."""

    def __init__(
        self,
        period: float | None,
        started: float,
        succeeded: float,
        attempted: float,
        failures: int = 0,
        failed: tuple[str, ...] = (),
    ) -> None:
        self.period = period
        self.started = started
        self.succeeded = succeeded
        self.attempted = attempted
        self.failures = failures
        self.failed = failed

    def render(self) -> bytes:
        """The record as the file holds it."""
        lines = [
            f"period {self.period if self.period is not None else 'none'}",
            f"started {self.started:.3f}",
            f"succeeded {self.succeeded:.3f}",
            f"attempted {self.attempted:.3f}",
            f"failures {self.failures}",
            f"failed {' '.join(self.failed)}",
        ]
        return ("\n".join(lines) + "\n").encode()

    @classmethod
    def parse(cls, text: str) -> Health:
        """The record in ``text``; ValueError when a field is missing or malformed."""
        fields: dict[str, str] = {}
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            fields[key] = value.strip()
        try:
            period = None if fields["period"] == "none" else float(fields["period"])
            return cls(
                period,
                float(fields["started"]),
                float(fields["succeeded"]),
                float(fields["attempted"]),
                int(fields["failures"]),
                tuple(fields.get("failed", "").split()),
            )
        except KeyError as err:
            raise ValueError(f"no {err.args[0]} field") from None

    def succeeded_now(self, now: float) -> Health:
        """This record after a successful fetch at ``now``."""
        return Health(self.period, self.started, now, now)

    def failed_now(self, now: float, names: tuple[str, ...]) -> Health:
        """This record after a failed fetch at ``now`` (``names``: the secrets that failed)."""
        return Health(
            self.period, self.started, self.succeeded, now, self.failures + 1, tuple(names)
        )


def read_health(directory: str) -> Health | None:
    """The health record of ``directory``; None when it has none (no refresh series).

    Raises OSError when it cannot be read, ValueError when it is malformed.
    """
    path = os.path.join(directory, STATE_DIRECTORY, HEALTH_FILE)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as stream:
        return Health.parse(stream.read(65536).decode("utf-8", "replace"))


def status(directory: str, max_age: str | None, now: float | None = None) -> tuple[int, str]:
    """The probe's verdict on ``directory``: (exit status, one line saying why)."""
    now = time.time() if now is None else now
    try:
        health = read_health(directory)
        written = None if health is not None else _written_at(directory)
    except OSError as err:
        return EXIT_UNHEALTHY, f"not ready: cannot read {directory}: {err.strerror}"
    except ValueError as err:
        return EXIT_UNHEALTHY, f"not ready: the health record of {directory} is damaged: {err}"
    if health is None:
        if written is None:
            return EXIT_UNHEALTHY, f"not ready: {directory} holds no secrets yet"
        health = Health(None, written, written, written)
    try:
        limit = max_age_seconds(max_age, health.period)
    except ValueError as err:
        return EXIT_USAGE, f"--max-age {max_age}: {err}"
    age = max(0.0, now - health.succeeded)
    every = f"refreshed every {health.period:g} s" if health.period else "written once"
    failing = ""
    if health.failures:
        names = f": {', '.join(health.failed)}" if health.failed else ""
        failing = f"; {health.failures} failed since{names}"
    if limit is not None and age > limit:
        return (
            EXIT_UNHEALTHY,
            f"unhealthy: last success {age:.0f} s ago, more than {limit:g} s ({every}{failing})",
        )
    return EXIT_READY, f"ready: last success {age:.0f} s ago ({every}{failing})"


def max_age_seconds(text: str | None, period: float | None) -> float | None:
    """``--max-age`` in seconds: a duration, or ``Nx`` periods; None: no limit."""
    if text is None:
        text = DEFAULT_MAX_AGE
        if period is None:
            return None  # the default only applies to a refreshed directory
    if text.strip().lower().endswith("x"):
        try:
            factor = float(text.strip()[:-1])
        except ValueError:
            raise ValueError("expected a duration (90s, 5m) or a number of periods (3x)") from None
        if factor <= 0:
            raise ValueError("a number of periods must be above 0")
        if period is None:
            raise ValueError("this directory is not refreshed: give a duration such as 90s")
        return factor * period
    from secretinit._declaration import parse_duration

    try:
        return parse_duration(text, "--max-age")
    except ValueError:
        raise ValueError("expected a duration (90s, 5m) or a number of periods (3x)") from None


def _written_at(directory: str) -> float | None:
    """When the ``..data`` link was last swapped: the files' time, with no health record."""
    try:
        return os.stat(os.path.join(directory, DATA_LINK), follow_symlinks=False).st_mtime
    except FileNotFoundError:
        return None


def status_main(argv: list[str], environ: Mapping[str, str] = os.environ) -> int:
    """``secretinit status ...`` without click; prints one line, returns the exit status."""
    directory = environ.get("SECRETINIT_DIR") or None
    max_age = None
    items = iter(argv)
    for item in items:
        flag, equals, value = item.partition("=")
        if flag not in ("--dir", "--max-age"):
            print(f"{USAGE}\nsecretinit status: unknown argument {item!r}", file=sys.stderr)
            return EXIT_USAGE
        if not equals:
            value = next(items, "")
        if not value:
            print(f"{USAGE}\nsecretinit status: {flag} needs a value", file=sys.stderr)
            return EXIT_USAGE
        if flag == "--dir":
            directory = value
        else:
            max_age = value
    if directory is None:
        print(f"{USAGE}\nsecretinit status: give --dir (or SECRETINIT_DIR)", file=sys.stderr)
        return EXIT_USAGE
    code, message = status(directory, max_age)
    print(message, file=sys.stderr if code == EXIT_USAGE else sys.stdout)
    return code
