"""Azure SDK errors, translated into secretinit's error family.

Messages name the vault, the secret and what Key Vault or the credential
said; they never hold a value or a token. Key Vault error bodies and
azure-identity messages carry neither.
"""

from __future__ import annotations

import re
import ssl

from secretinit import AccessDenied, FetchError, NotFound, Throttled, Unreachable, shorten

MAX_DETAIL = 200
_CHAIN_LINE = re.compile(r"^\t(\w+): (.*)$", re.MULTILINE)
_ERRNO = re.compile(r"\[Errno -?\d+\] [^'\")]+")
_URL_SENTENCE = re.compile(r"[^.]*https?://\S+[^.]*\.?")
# How azure-identity says that a credential of a chain found nothing to use.
_UNAVAILABLE = re.compile(
    r"authentication unavailable|unavailable\.|not found on path|not installed|"
    r"could not be found|requires the|package is required|No accounts were found",
    re.IGNORECASE,
)


class SecretNotFound(NotFound):
    """A 404: this secret (or this version) does not exist."""


class SecretDenied(AccessDenied):
    """A 403 on this secret: disabled, or a permission the caller lacks."""


class SecretRefused(FetchError):
    """Another 4xx about this request."""


def is_vault_wide(error: FetchError) -> bool:
    """Whether ``error`` would hit every read of the vault (no token, unreachable, 429).

    The first read of a vault that fails so spares the others a doomed try.
    """
    return not isinstance(error, SecretNotFound | SecretDenied | SecretRefused)


def describe_error(err: Exception, what: str, vault_url: str, credential: str) -> FetchError:
    """The secretinit error for ``err``, raised while reading ``what`` from ``vault_url``."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )

    where = f"{what} in {vault_url}"
    if isinstance(err, FetchError):  # already ours (a credential that cannot be built)
        return err
    if isinstance(err, ResourceNotFoundError):
        return SecretNotFound(f"{where} does not exist ({_code(err) or 'SecretNotFound'})")
    if isinstance(err, ClientAuthenticationError):
        url = str(getattr(getattr(err.response, "request", None), "url", ""))
        if url.startswith(vault_url):
            return AccessDenied(
                f"{vault_url} rejected the token of the {credential} credential "
                f"(401 {_code(err) or 'Unauthorized'}): {_detail(err)}"
            )
        return AccessDenied(f"no token from the {credential} credential: {_auth_detail(err)}")
    if isinstance(err, HttpResponseError):
        status = err.status_code or 0
        code = _code(err)
        if status == 403:
            inner = _inner_code(err)
            if inner == "SecretDisabled":
                return SecretDenied(f"{where} is disabled (403 SecretDisabled)")
            return SecretDenied(f"{where}: 403 {inner or code}: {_detail(err)}")
        if status in (408, 429) or status >= 500:
            header = getattr(err.response, "headers", {}).get("Retry-After")
            after = Throttled.parse_retry_after(header)
            hint = f", Retry-After {after:g} s" if after is not None else ""
            said = f"{vault_url} answered {status} {code or ''}".rstrip() + hint
            if status == 429:
                return Throttled(f"{said}: Key Vault is throttling requests", after)
            return Unreachable(said)
        return SecretRefused(f"{where}: Key Vault answered {status} {code or ''}: {_detail(err)}")
    if isinstance(err, ServiceRequestError | ServiceResponseError):
        if _certificate_error(err):
            return FetchError(
                f"the TLS certificate of {vault_url} is not trusted: set [providers.azure] "
                "ca_bundle or REQUESTS_CA_BUNDLE to the CA that signed it"
            )
        return Unreachable(f"could not reach {vault_url}: {_transport_reason(err)}")
    if isinstance(err, ValueError) and "challenge resource" in str(err):
        return FetchError(
            f"{vault_url} asked for a token of another resource than its own domain; "
            "behind a private endpoint with a custom host name set "
            "[providers.azure] verify_challenge_resource = false"
        )
    return FetchError(f"{where}: {type(err).__name__}: {_detail(err)}")


def _code(err: Exception) -> str | None:
    error = getattr(err, "error", None)
    code = getattr(error, "code", None)
    return str(code) if code else None


def _inner_code(err: Exception) -> str | None:
    inner = getattr(getattr(err, "error", None), "innererror", None)
    code = inner.get("code") if isinstance(inner, dict) else None
    return str(code) if code else None


def _detail(err: Exception) -> str:
    error = getattr(err, "error", None)
    text = getattr(error, "message", None) or getattr(err, "message", None) or str(err)
    return shorten(str(text), MAX_DETAIL)


def _auth_detail(err: Exception) -> str:
    """One short line from azure-identity's explanation of a failed token request.

    DefaultAzureCredential lists every credential it tried, most of them only
    "not configured here", with links and advice: keep the ones that really
    tried and failed, and count the rest.
    """
    text = str(getattr(err, "message", None) or err)
    tried = _CHAIN_LINE.findall(text)
    if not tried:
        return shorten(_URL_SENTENCE.sub("", text), MAX_DETAIL)
    failed = [(name, reason) for name, reason in tried if not _UNAVAILABLE.search(reason)]
    idle = len(tried) - len(failed)
    if not failed:
        return (
            f"none of the {len(tried)} credentials it tries is configured here (service "
            "principal variables, workload identity, managed identity, az login, ...)"
        )
    reasons = "; ".join(
        f"{name}: {_URL_SENTENCE.sub('', reason).strip()}" for name, reason in failed
    )
    return shorten(reasons, MAX_DETAIL) + (
        f" (the other {idle} are not configured here)" if idle else ""
    )


def _transport_reason(err: Exception) -> str:
    # requests and urllib3 nest the reason in a long repr: keep its core.
    text = str(err)
    errno = _ERRNO.search(text)
    if errno:
        return errno.group(0)
    if "timed out" in text.lower():
        return "timed out"
    return shorten(text, MAX_DETAIL)


def _certificate_error(err: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        if "CERTIFICATE_VERIFY_FAILED" in str(current):
            return True
        current = (
            current.__cause__ or current.__context__ or getattr(current, "inner_exception", None)
        )
    return False
