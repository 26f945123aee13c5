"""The Vault provider's logger, and its debug lines with JSON fields."""

from __future__ import annotations

import logging
from typing import Any

LOGGER = logging.getLogger("secretinit.vault")


def debug(message: str, event: str, **fields: Any) -> None:
    """One debug line. Names, paths and durations only: never a token, secret id or value."""
    LOGGER.debug(message, extra={"fields": {"event": event, **fields}})
