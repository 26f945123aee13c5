"""Secret Manager's answers, and transport failures, as secretinit's errors.

The same status reaches us as a gRPC status or, over REST, as an HTTP status
with the gRPC name in the JSON body (a disabled version is HTTP 400 there,
``FAILED_PRECONDITION`` only in the body). Messages name the resource and
what Secret Manager said; Secret Manager never puts a value in them.
"""

from __future__ import annotations

from typing import Any

from secretinit import AccessDenied, FetchError, NotFound, Throttled, Unreachable, shorten

MAX_DETAIL = 200
#: Statuses that a later attempt may not get: the core retries them to its deadline
#: (RESOURCE_EXHAUSTED too, as Throttled, not before the RetryInfo delay).
TRANSIENT = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "ABORTED", "UNKNOWN"})


class ChecksumMismatch(FetchError):
    """The payload does not match its CRC32C: corrupted on the way, so asked for again."""

    transient = True
    kind = "checksum mismatch"


def describe_error(err: Exception, name: str, endpoint: str, source: str) -> FetchError:
    """The secretinit error for ``err``, raised reading version ``name`` from ``endpoint``."""
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth

    if isinstance(err, FetchError):
        return err
    if isinstance(err, api.GoogleAPICallError):
        status, message = _status(err)
        if status in ("RESOURCE_EXHAUSTED", "HTTP 429"):
            said = f"{status}: {shorten(message, MAX_DETAIL)}" if message else status
            return Throttled(f"{endpoint} answered {said}", retry_delay(err))
        return _from_status(status, message, name, endpoint, source)
    if isinstance(err, auth.GoogleAuthError):
        # The token expired mid-run and could not be renewed.
        return token_error(err, source)
    import requests

    if isinstance(err, requests.exceptions.SSLError):
        return FetchError(
            f"TLS with {endpoint} failed (is its certificate's CA in REQUESTS_CA_BUNDLE?): "
            f"{shorten(str(err), MAX_DETAIL)}"
        )
    if isinstance(err, requests.exceptions.RequestException):
        return Unreachable(f"could not reach {endpoint}: {_transport_reason(err)}")
    return FetchError(f"reading {name} failed: {type(err).__name__}: {reason_of(err)}")


def _status(err: Any) -> tuple[str, str]:
    """(gRPC status name, Secret Manager's message) of an API error, over either transport."""
    response = getattr(err, "response", None)
    if response is not None and hasattr(response, "json"):
        try:
            body = response.json().get("error", {})
        except ValueError:
            body = {}
        status = body.get("status") or _name(err)
        return str(status), str(body.get("message") or response.reason or "")
    return _name(err), str(getattr(err, "message", "") or "")


def retry_delay(err: Any) -> float | None:
    """The wait a ``google.rpc.RetryInfo`` detail of ``err`` asks for, in seconds, if any.

    Over gRPC the details arrive as messages, over REST as JSON objects.
    """
    for detail in getattr(err, "details", None) or ():
        if isinstance(detail, dict):
            if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
                text = str(detail.get("retryDelay", ""))
                try:
                    return max(0.0, float(text.removesuffix("s")))
                except ValueError:
                    return None
        elif type(detail).__name__ == "RetryInfo":
            delay = detail.retry_delay
            return max(0.0, float(delay.seconds) + float(delay.nanos) / 1e9)
    return None


def _name(err: Any) -> str:
    code = getattr(err, "grpc_status_code", None)
    if code is not None:
        return str(code.name)
    return f"HTTP {getattr(err, 'code', '?')}"


def _from_status(status: str, message: str, name: str, endpoint: str, source: str) -> FetchError:
    said = f"{status}: {shorten(message, MAX_DETAIL)}" if message else status
    if status == "NOT_FOUND":
        return NotFound(f"Secret Manager has no {name} ({said})")
    if status == "FAILED_PRECONDITION" and "DISABLED" in message:
        return NotFound(f"{name} is disabled ({said})")
    if status == "FAILED_PRECONDITION" and "DESTROYED" in message:
        return NotFound(f"{name} is destroyed ({said})")
    if status == "PERMISSION_DENIED":
        return AccessDenied(f"{source} may not read {name} ({said})")
    if status == "UNAUTHENTICATED":
        return AccessDenied(f"{endpoint} rejected the token of {source} ({said})")
    if status == "UNAVAILABLE" and "CERTIFICATE_VERIFY_FAILED" in message:
        # gRPC reports an untrusted certificate as an unavailable service:
        # retrying would not change the certificate.
        return FetchError(
            f"TLS with {endpoint} failed (is its certificate's CA in "
            f"GRPC_DEFAULT_SSL_ROOTS_FILE_PATH?): certificate verify failed"
        )
    if status in TRANSIENT or status in ("HTTP 502", "HTTP 503", "HTTP 504"):
        return Unreachable(f"{endpoint} answered {said}")
    return FetchError(f"Secret Manager refused to read {name} ({said})")


def _transport_reason(err: Exception) -> str:
    text = str(err)
    if "timed out" in text.lower() or "timeout" in type(err).__name__.lower():
        return "timed out"
    for marker in ("[Errno", "NameResolutionError", "Connection refused"):
        at = text.find(marker)
        if at != -1:
            return shorten(text[at:].split("'")[0].split('"')[0].rstrip(")"), MAX_DETAIL)
    return shorten(text, MAX_DETAIL)


def token_error(err: Exception, source: str) -> FetchError:
    """The error for a token that ``source`` could not give (google-auth's ``err``)."""
    from google.auth import exceptions

    reason = reason_of(err)
    if isinstance(err, exceptions.TransportError):
        return Unreachable(f"no token from {source}: it could not be reached: {reason}")
    if isinstance(err, exceptions.RefreshError) and err.retryable:
        return Unreachable(f"no token from {source} (a transient failure): {reason}")
    return AccessDenied(f"no token from {source}: {reason}")


def reason_of(err: Exception) -> str:
    """google-auth's reason, short: its messages are tuples, reprs and links."""
    args = getattr(err, "args", ())
    text = str(args[0]) if args else str(err)
    if "For more information" in text:
        text = text.split("For more information")[0].rstrip(" .") + "."
    return shorten(text, MAX_DETAIL)
