"""The hvac client on one pooled session, and hvac's errors in secretinit's terms."""

from __future__ import annotations

import math
import re
import time
from typing import Any

import hvac  # type: ignore[import-untyped]  # hvac ships no type information
import hvac.exceptions  # type: ignore[import-untyped]
import requests
import requests.adapters
import requests.utils

from secretinit import AccessDenied, FetchError, NotFound, Throttled, Unreachable
from secretinit_vault._settings import VaultSettings


class TokenRejected(AccessDenied):
    """Vault refused the token itself: every further request would be refused too."""


class DeadlineSession(requests.Session):
    """A session whose every request ends by ``deadline`` (a ``time.monotonic`` value).

    hvac gives each request one fixed timeout; the core gives a fetch the time
    left before ``--timeout``. Clamping here bounds every call hvac makes,
    logins included, without reaching into hvac.

    A 429 (a rate-limit quota) is raised here as :class:`Throttled` with its
    ``Retry-After``, which hvac's own exception would drop.
    """

    deadline = math.inf
    address = ""

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        if self.deadline < math.inf:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise requests.exceptions.Timeout("the deadline passed")
            kwargs["timeout"] = remaining
        response = super().request(method, url, *args, **kwargs)
        if response.status_code == 429:
            raise _throttled(response, self.address)
        return response


def _throttled(response: Any, address: str) -> Throttled:
    retry_after = Throttled.parse_retry_after(response.headers.get("Retry-After"))
    try:
        errors = response.json().get("errors") or []
    except ValueError:  # a proxy's page rather than Vault's JSON
        errors = []
    said = " ".join("; ".join(str(e) for e in errors).split())
    # Vault names the request path ("request path "secret/data/x": rate limit quota exceeded").
    said = re.sub(r'^request path "[^"]*": ', "", said) or "Too Many Requests"
    wait = f", Retry-After {retry_after:g} s" if retry_after is not None else ""
    return Throttled(f"Vault at {address} is throttling requests (429 {said}{wait})", retry_after)


def make_client(settings: VaultSettings) -> tuple[Any, DeadlineSession]:
    """An hvac client on a pooled session configured from ``settings`` only.

    hvac and requests both read the environment on their own (VAULT_CACERT when
    hvac is imported, VAULT_TOKEN and ~/.vault-token when a client is built,
    REQUESTS_CA_BUNDLE and .netrc on every request): each setting is passed
    explicitly, and the session ignores the environment.
    """
    session = DeadlineSession()
    session.address = settings.address
    session.trust_env = False
    session.verify = settings.verify
    session.cert = settings.client_cert
    # The proxy variables are honoured as the vault CLI does, read once rather than per request.
    session.proxies = requests.utils.get_environ_proxies(settings.address)
    pool = requests.adapters.HTTPAdapter(
        pool_connections=1, pool_maxsize=settings.concurrency, max_retries=0
    )
    session.mount("https://", pool)
    session.mount("http://", pool)
    client = hvac.Client(
        url=settings.address,
        token="",  # not None: hvac would read VAULT_TOKEN and ~/.vault-token itself
        cert=settings.client_cert or (),  # not None: hvac would read VAULT_CLIENT_CERT
        verify=settings.verify,  # hvac keeps this one when the session's is False
        session=session,
        namespace=settings.namespace,
    )
    return client, session


def vault_error(err: BaseException, what: str, address: str) -> FetchError:
    """``err`` from hvac or requests as a FetchError about ``what``, without any value."""
    if isinstance(err, FetchError):
        return err
    if isinstance(err, hvac.exceptions.InvalidPath):
        return NotFound(f"{what} does not exist")
    if isinstance(err, hvac.exceptions.Forbidden):
        # Vault answers a bad token with the bare error and a policy denial
        # with it wrapped in a list ("1 error occurred: * permission denied").
        if list(err.errors or ()) == ["permission denied"]:
            return TokenRejected("Vault rejected the token (expired, revoked or unknown)")
        return AccessDenied(f"{what}: permission denied by policy")
    if isinstance(err, hvac.exceptions.Unauthorized):
        return AccessDenied(f"{what}: {vault_reason(err)}")
    if isinstance(err, hvac.exceptions.VaultDown):
        return Unreachable(f"Vault at {address} is unavailable: {vault_reason(err)}")
    if isinstance(err, hvac.exceptions.RateLimitExceeded):  # the session raises Throttled first
        return Throttled(f"Vault at {address} is throttling requests (429)")
    if isinstance(
        err,
        hvac.exceptions.InternalServerError
        | hvac.exceptions.BadGateway
        | hvac.exceptions.VaultNotInitialized
        # hvac maps no other status (412, 504 from a proxy, ...) to a class: retry them.
        | hvac.exceptions.UnexpectedError,
    ):
        return Unreachable(f"Vault at {address} failed: {vault_reason(err)}")
    if isinstance(err, hvac.exceptions.VaultError):
        reason = vault_reason(err)
        if "HTTP request to an HTTPS server" in reason:
            return FetchError(
                f"{address} serves HTTPS, but VAULT_ADDR says http://: write https:// "
                "(a configuration error, not retried)"
            )
        return FetchError(f"{what}: Vault refused the request: {reason}")
    if isinstance(err, requests.exceptions.SSLError) and _is_certificate_error(err):
        return FetchError(
            f"TLS verification of {address} failed ({_os_reason(err)}): "
            "set VAULT_CACERT to the CA that signed Vault's certificate"
        )
    if isinstance(err, requests.exceptions.SSLError) and _is_plain_http(err):
        # A TLS hello answered with plain HTTP: the address, not the server, is wrong.
        return FetchError(
            f"{address} answered in plain HTTP, not TLS: if Vault serves HTTP there, write "
            "http:// in VAULT_ADDR (a configuration error, not retried)"
        )
    if isinstance(err, requests.exceptions.InvalidURL | requests.exceptions.InvalidSchema):
        return FetchError(f"VAULT_ADDR {address!r} is not a usable URL: {type(err).__name__}")
    if isinstance(err, requests.exceptions.Timeout):
        return Unreachable(f"no answer from Vault at {address} before the deadline")
    if isinstance(err, requests.exceptions.RequestException):
        return Unreachable(f"cannot reach Vault at {address}: {_os_reason(err)}")
    return FetchError(f"{what}: {type(err).__name__}")


def vault_reason(err: Any) -> str:
    """The error text Vault sent, on one line."""
    text = "; ".join(str(e) for e in err.errors) if err.errors else str(err.args[0] or "")
    text = re.sub(r"\d+ errors? occurred:|\*", " ", text)
    return " ".join(text.split()) or type(err).__name__


def _os_reason(err: BaseException) -> str:
    # requests nests the cause deep in a long repr; the OS's words are what a reader needs.
    match = re.search(r"\[(?:Errno -?\d+|SSL: [A-Z_]+)\] ([^'\"()]+)", str(err))
    return match.group(1).strip() if match else type(err).__name__


def _is_certificate_error(err: BaseException) -> bool:
    text = str(err)
    return "CERTIFICATE_VERIFY_FAILED" in text or "doesn't match" in text


def _is_plain_http(err: BaseException) -> bool:
    # OpenSSL's words for a server that answered a TLS hello with "HTTP/1.1 400".
    text = str(err)
    return "WRONG_VERSION_NUMBER" in text or "record layer failure" in text


def scrubbed(error: FetchError, scrub: Any) -> FetchError:
    """``error`` with ``scrub`` applied to its text, keeping its class and its fields."""
    import copy

    clean = copy.copy(error)
    clean.args = (scrub(str(error)),)
    return clean
