"""Logging of the main process: one line per event on stderr, text or JSON.

Messages are built from names, references and reasons, never from values.
As a second line of defence every value fetched in this run is registered
with :data:`REDACTOR`, which blanks it out of any line before it is
written, so a provider message that echoes a value by mistake still does not
print it.

The core writes its lines itself: the standard ``logging`` package costs more
to import than everything else an env-file start logs with, and that start
has no other use for it. A provider that logs through
``logging.getLogger("secretinit.NAME")`` is connected by
:func:`route_provider_logging` (the registry calls it when it loads a
provider that is not built in): its records are redacted, formatted and
written the same way, at the same level.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from secretinit._supervisor import LEVELS, format_log_line

LOGGER_NAME = "secretinit"
LOG_FORMATS = ("text", "json")
REDACTED = "[redacted]"
# Shorter values are not blanked out: replacing every "ab" in a log line would
# garble it while hiding nothing a reader could not guess.
MIN_REDACTED_LENGTH = 4


class Redactor:
    """Blanks every registered value out of a line's message and fields."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._ordered: list[str] | None = []

    def register(self, value: bytes) -> None:
        """Add the text form of a fetched value to what is blanked out."""
        text = value.decode("utf-8", "ignore").strip()
        if len(text) >= MIN_REDACTED_LENGTH and text not in self._values:
            self._values.add(text)
            self._ordered = None  # sorted again at the next use, not at every value

    @property
    def values(self) -> list[str]:
        """The registered values, longest first, so no part of one is left behind."""
        if self._ordered is None:
            self._ordered = sorted(self._values, key=len, reverse=True)
        return self._ordered

    def redact(self, text: str) -> str:
        """``text`` with every registered value replaced."""
        for value in self.values:
            if value in text:
                text = text.replace(value, REDACTED)
        return text

    def redact_fields(self, fields: dict[str, Any]) -> dict[str, Any]:
        """A copy of a line's ``fields`` with every registered value replaced."""
        if not self._values:
            return fields
        return {key: self._redact_field(value) for key, value in fields.items()}

    def _redact_field(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, list):
            return [self._redact_field(v) for v in value]
        if isinstance(value, dict):
            return {k: self._redact_field(v) for k, v in value.items()}
        return value


REDACTOR = Redactor()


class _Settings:
    """The format and least severe level of this process's lines."""

    log_format = "text"
    threshold = LEVELS["info"]


_SETTINGS = _Settings()
_WRITING = threading.Lock()


def configure_logging(log_format: str, level: str) -> None:
    """Write secretinit's lines to stderr in ``log_format`` from ``level`` up."""
    _SETTINGS.log_format = log_format
    _SETTINGS.threshold = LEVELS[level]
    if "logging" in sys.modules:  # a provider connected already: follow the new level
        route_provider_logging()


def log(level: str, message: str, **fields: Any) -> None:
    """Log one event; ``fields`` become keys of the JSON record."""
    if LEVELS[level] >= _SETTINGS.threshold:
        write_line(level, message, fields)


def write_line(level: str, message: str, fields: dict[str, Any]) -> None:
    """Redact, format and write one line to stderr (whatever stderr is now)."""
    line = format_log_line(
        _SETTINGS.log_format, level, REDACTOR.redact(message), REDACTOR.redact_fields(fields)
    )
    with _WRITING:  # providers log from their own threads: one whole line at a time
        try:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass  # a closed stderr must not turn a good start into a failure


def route_provider_logging() -> None:
    """Send the records of the ``secretinit`` logger and its children through :func:`write_line`.

    For providers that log with the standard ``logging`` package: their
    records get the same redaction, format and level as the core's lines.
    """
    import logging

    class LineHandler(logging.Handler):
        """Writes a record as the core's own lines are written."""

        def emit(self, record: logging.LogRecord) -> None:
            level = "debug"
            for name, number in LEVELS.items():  # ascending: the last one reached
                if record.levelno >= number:
                    level = name
            write_line(level, record.getMessage(), dict(getattr(record, "fields", {})))

    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers[:] = [LineHandler()]
    logger.setLevel(_SETTINGS.threshold)
    logger.propagate = False
