"""Logging of the main process: one line per event on stderr, text or JSON.

Messages are built from names, references and reasons, never from values.
As a second line of defence every value fetched in this run is registered
with :data:`REDACTOR`, which blanks it out of any record before it is
written, so a provider message that echoes a value by mistake still does not
print it.
"""

from __future__ import annotations

import logging
from typing import Any

from secretinit._supervisor import LEVELS, format_log_line

LOGGER = logging.getLogger("secretinit")
LOG_FORMATS = ("text", "json")
REDACTED = "[redacted]"
# Shorter values are not blanked out: replacing every "ab" in a log line would
# garble it while hiding nothing a reader could not guess.
MIN_REDACTED_LENGTH = 4


class Redactor(logging.Filter):
    """Blanks every registered value out of a record's message and fields."""

    def __init__(self) -> None:
        super().__init__()
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

    def filter(self, record: logging.LogRecord) -> bool:
        if self._values:
            record.msg = self.redact(record.getMessage())
            record.args = None
            fields = getattr(record, "fields", None)
            if fields:
                record.fields = {k: self._redact_field(v) for k, v in fields.items()}
        return True

    def _redact_field(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, list):
            return [self._redact_field(v) for v in value]
        if isinstance(value, dict):
            return {k: self._redact_field(v) for k, v in value.items()}
        return value


REDACTOR = Redactor()


class LineFormatter(logging.Formatter):
    """Formats a record as the supervisor does, so a run's lines look alike."""

    def __init__(self, log_format: str) -> None:
        super().__init__()
        self.log_format = log_format

    def format(self, record: logging.LogRecord) -> str:
        level = record.levelname.lower()
        fields = dict(getattr(record, "fields", {}))
        return format_log_line(self.log_format, level, record.getMessage(), fields)


def configure_logging(log_format: str, level: str) -> None:
    """Send secretinit's records to stderr in ``log_format`` from ``level`` up."""
    handler = logging.StreamHandler()
    handler.setFormatter(LineFormatter(log_format))
    # On the handler for the records of child loggers (secretinit.vault, ...),
    # which a parent logger's filters never see; on the logger for any other
    # handler attached to it.
    handler.addFilter(REDACTOR)
    LOGGER.handlers[:] = [handler]
    if REDACTOR not in LOGGER.filters:
        LOGGER.addFilter(REDACTOR)
    LOGGER.setLevel(LEVELS[level])
    LOGGER.propagate = False


def log(level: str, message: str, **fields: Any) -> None:
    """Log one event; ``fields`` become keys of the JSON record."""
    LOGGER.log(LEVELS[level], message, extra={"fields": fields})
