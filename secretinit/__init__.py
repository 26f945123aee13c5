"""secretinit: fetch secrets into private files, then run and supervise the application.

This module is what a provider author imports: the :class:`Provider` base
class, :class:`SecretRef`, the error family, :func:`select_key`, :func:`shorten` and
:func:`run_bounded` (the one runner for a batch's concurrent requests). It pulls in
no third-party package, so importing it costs a provider nothing, and its
names are loaded on first use.
"""

from __future__ import annotations

# Not typing's: importing typing is most of what this module would cost.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from secretinit._errors import (
        AccessDenied,
        BadReference,
        ConfigError,
        Expired,
        FetchError,
        NotChecked,
        NotFound,
        SecretInitError,
        Throttled,
        Unreachable,
        UsageError,
        WriteFailed,
        shorten,
    )
    from secretinit._provider import FetchResult, Provider, encode_value, select_key
    from secretinit._reference import SecretRef, parse_reference
    from secretinit._runner import Cancel, run_bounded

# Imported on first use (PEP 562): ``secretinit status``, a health probe run
# every few seconds for a container's whole life, and the supervisor's
# commands load this package but none of these modules (typing, re, threading).
_EXPORTS = {
    **dict.fromkeys(
        (
            "AccessDenied",
            "BadReference",
            "ConfigError",
            "Expired",
            "FetchError",
            "NotChecked",
            "NotFound",
            "SecretInitError",
            "Throttled",
            "Unreachable",
            "UsageError",
            "WriteFailed",
            "shorten",
        ),
        "secretinit._errors",
    ),
    **dict.fromkeys(
        ("FetchResult", "Provider", "encode_value", "select_key"), "secretinit._provider"
    ),
    **dict.fromkeys(("SecretRef", "parse_reference"), "secretinit._reference"),
    **dict.fromkeys(("Cancel", "run_bounded"), "secretinit._runner"),
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'secretinit' has no attribute {name!r}")
    value = getattr(__import__(module, fromlist=[name]), name)
    globals()[name] = value  # once: later lookups find it here
    return value


__version__ = "0.1.0"

__all__ = [
    "AccessDenied",
    "BadReference",
    "Cancel",
    "ConfigError",
    "Expired",
    "FetchError",
    "FetchResult",
    "NotChecked",
    "NotFound",
    "Provider",
    "SecretInitError",
    "SecretRef",
    "Throttled",
    "Unreachable",
    "UsageError",
    "WriteFailed",
    "__version__",
    "encode_value",
    "parse_reference",
    "run_bounded",
    "select_key",
    "shorten",
]
