"""secretinit: fetch secrets into private files, then run and supervise the application.

This module is what a provider author imports: the :class:`Provider` base
class, :class:`SecretRef`, the error family, :func:`select_key`, :func:`shorten` and
:func:`run_bounded` (the one runner for a batch's concurrent requests). It pulls in
no third-party package, so importing it costs a provider nothing.
"""

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
