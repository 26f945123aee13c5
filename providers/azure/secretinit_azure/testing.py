"""A small HTTPS fake of the Azure Key Vault REST API, for tests and benchmarks.

No Key Vault emulator is published, so this module is one: enough of the
service for the real ``azure-keyvault-secrets`` client and ``azure-identity``
credentials to talk to it unchanged.

- :func:`make_certificates` makes a throwaway CA and a server certificate for
  ``127.0.0.1``/``localhost`` (the SDK refuses bearer tokens over plain http);
- :class:`FakeKeyVault` serves ``GET /secrets/{name}[/{version}]`` over TLS
  with Key Vault's challenge flow (401 + ``WWW-Authenticate``), its JSON
  shapes and its errors (404 ``SecretNotFound``, 403 ``AccessDenied`` and
  ``SecretDisabled``, 429 with ``Retry-After``, 5xx), and a plain-http managed
  identity endpoint of the App Service shape (``IDENTITY_ENDPOINT`` and
  ``IDENTITY_HEADER``) that counts the tokens it issues.

It needs the ``cryptography`` package (a dependency of ``azure-identity``).
"""

from __future__ import annotations

import http.server
import secrets as random_tokens
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from secretinit.testing.certificates import Certificates, make_certificates
from secretinit.testing.servers import LoopbackServer, QuietHandler

__all__ = ["Certificates", "FakeKeyVault", "make_certificates"]

RESOURCE = "https://vault.azure.net"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
API_VERSION = "2019-08-01"


@dataclass
class _Version:
    version: str
    value: str
    enabled: bool
    content_type: str | None
    tags: dict[str, str]
    created: int = field(default_factory=lambda: int(time.time()))


@dataclass
class _Fault:
    status: int
    remaining: int
    retry_after: int | None


class FakeKeyVault:
    """A Key Vault on ``https://127.0.0.1:PORT`` and its token endpoint on plain http.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. Point a
    client at :attr:`vault_url`; point ``IDENTITY_ENDPOINT`` and
    ``IDENTITY_HEADER`` at :attr:`identity_endpoint` and :attr:`identity_header`.
    """

    def __init__(self, certificates: Certificates) -> None:
        self.certificates = certificates
        self.identity_header = random_tokens.token_hex(16)
        self.token_ttl = 3600
        #: Seconds each vault response waits, to stand in for the network to a real vault.
        self.latency = 0.0
        self.lock = threading.Lock()
        #: Every token handed out, so that tests can search output for them.
        self.issued: list[str] = []
        self.identity_requests: list[dict[str, str]] = []
        self.requests: list[tuple[str, int]] = []  # (path, status) of every vault request
        self._versions: dict[str, list[_Version]] = {}
        self._denied: set[str] = set()
        self._faults: dict[str, _Fault] = {}
        self._tokens: set[str] = set()
        self._servers: list[_Server] = []

    # Planting state.

    def set_secret(
        self,
        name: str,
        value: str,
        *,
        content_type: str | None = None,
        tags: dict[str, str] | None = None,
        enabled: bool = True,
    ) -> str:
        """Add a new version of secret ``name`` (the latest from now on); return its id."""
        version = uuid.uuid4().hex
        entry = _Version(version, value, enabled, content_type, dict(tags or {}))
        with self.lock:
            self._versions.setdefault(name, []).append(entry)
        return version

    def deny(self, name: str) -> None:
        """Answer reads of ``name`` with 403 Forbidden / AccessDenied."""
        with self.lock:
            self._denied.add(name)

    def fault(self, name: str, status: int, times: int, retry_after: int | None = None) -> None:
        """Answer the next ``times`` reads of ``name`` with ``status`` (429, 500, 503...)."""
        with self.lock:
            self._faults[name] = _Fault(status, times, retry_after)

    def revoke_tokens(self) -> None:
        """Make every issued token invalid (the vault answers 401 to it)."""
        with self.lock:
            self._tokens.clear()

    # Serving.

    @property
    def tokens_issued(self) -> int:
        """How many tokens the identity endpoint has handed out."""
        return len(self.issued)

    @property
    def port(self) -> int:
        """The vault's port on 127.0.0.1 (it also answers as ``localhost``)."""
        return self._servers[0].port

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``: the vault part of an ``azure-kv://`` reference."""
        return f"127.0.0.1:{self.port}"

    @property
    def vault_url(self) -> str:
        """``https://127.0.0.1:PORT``, for a ``SecretClient``."""
        return f"https://{self.host}"

    @property
    def identity_endpoint(self) -> str:
        """The managed identity endpoint's URL, for ``IDENTITY_ENDPOINT``."""
        return f"http://127.0.0.1:{self._servers[1].port}/msi/token"

    def start(self) -> FakeKeyVault:
        """Listen on two free loopback ports and serve from daemon threads."""
        vault = _Server(_VaultHandler, self, self.certificates.server_context())
        identity = _Server(_IdentityHandler, self, None)
        self._servers = [vault, identity]
        for server in self._servers:
            server.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening sockets."""
        for server in self._servers:
            server.stop()

    def __enter__(self) -> FakeKeyVault:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # What the handlers call.

    def issue_token(self, query: dict[str, str], header: str | None) -> tuple[int, dict[str, Any]]:
        """(status, JSON body) of the identity endpoint for one token request."""
        with self.lock:
            self.identity_requests.append(query)
            if header != self.identity_header:
                return 401, {"error": "invalid_request", "message": "bad X-IDENTITY-HEADER"}
            if query.get("resource") != RESOURCE:
                return 400, {"error": "invalid_resource", "message": "unknown resource"}
            token = "fake-token-" + random_tokens.token_hex(16)
            self._tokens.add(token)
            self.issued.append(token)
        return 200, {
            "access_token": token,
            "expires_on": str(int(time.time()) + self.token_ttl),
            "resource": RESOURCE,
            "token_type": "Bearer",
            "client_id": query.get("client_id", str(uuid.UUID(int=1))),
        }

    def read(self, path: str, authorization: str | None) -> tuple[int, dict[str, Any], int | None]:
        """(status, JSON body, Retry-After) for one vault request."""
        parts = [p for p in path.split("/") if p]
        with self.lock:
            if authorization is None or authorization.removeprefix("Bearer ") not in self._tokens:
                return (
                    401,
                    _error("Unauthorized", "AKV10000: Request is missing a Bearer token."),
                    None,
                )
            if len(parts) not in (2, 3) or parts[0] != "secrets":
                return 400, _error("BadParameter", "Unknown request path."), None
            name = parts[1]
            fault = self._faults.get(name)
            if fault is not None and fault.remaining > 0:
                fault.remaining -= 1
                code = "Throttled" if fault.status == 429 else "InternalServerError"
                return fault.status, _error(code, "Try again later."), fault.retry_after
            if name in self._denied:
                message = (
                    "The user, group or application 'appid=fake' does not have secrets get "
                    "permission on key vault 'fake'."
                )
                return 403, _error("Forbidden", message, inner="AccessDenied"), None
            versions = self._versions.get(name, [])
            wanted = parts[2] if len(parts) == 3 else None
            found = [v for v in versions if wanted is None or v.version == wanted]
            if not found:
                label = name if wanted is None else f"{name}/{wanted}"
                message = f"A secret with (name/id) {label} was not found in this key vault."
                return 404, _error("SecretNotFound", message), None
            entry = found[-1]
            if not entry.enabled:
                message = "Operation get is not allowed on a disabled secret."
                return 403, _error("Forbidden", message, inner="SecretDisabled"), None
        return 200, self._bundle(name, entry), None

    def _bundle(self, name: str, entry: _Version) -> dict[str, Any]:
        bundle: dict[str, Any] = {
            "value": entry.value,
            "id": f"{self.vault_url}/secrets/{name}/{entry.version}",
            "attributes": {
                "enabled": entry.enabled,
                "created": entry.created,
                "updated": entry.created,
                "recoveryLevel": "Recoverable+Purgeable",
                "recoverableDays": 90,
            },
            "tags": entry.tags,
        }
        if entry.content_type is not None:
            bundle["contentType"] = entry.content_type
        return bundle


def _error(code: str, message: str, inner: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if inner is not None:
        error["innererror"] = {"code": inner}
    return {"error": error}


class _Server(LoopbackServer):
    def __init__(
        self,
        handler: type[http.server.BaseHTTPRequestHandler],
        vault: FakeKeyVault,
        context: ssl.SSLContext | None,
    ) -> None:
        super().__init__(handler, context)
        self.vault = vault


class _Handler(QuietHandler):
    server: _Server


class _VaultHandler(_Handler):
    def do_GET(self) -> None:  # noqa: N802 - http.server dispatches on this name
        url = urlsplit(self.path)
        vault = self.server.vault
        if vault.latency:
            time.sleep(vault.latency)
        headers: dict[str, str] = {}
        if "api-version" not in parse_qs(url.query):
            status, body, retry_after = 400, _error("BadParameter", "api-version missing"), None
        else:
            status, body, retry_after = vault.read(url.path, self.headers.get("Authorization"))
        if status == 401:
            headers["WWW-Authenticate"] = (
                f'Bearer authorization="https://login.microsoftonline.com/{TENANT}", '
                f'resource="{RESOURCE}"'
            )
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        with vault.lock:
            vault.requests.append((url.path, status))
        self.send_json(status, body, headers)


class _IdentityHandler(_Handler):
    def do_GET(self) -> None:  # noqa: N802 - http.server dispatches on this name
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        status, body = self.server.vault.issue_token(query, self.headers.get("X-IDENTITY-HEADER"))
        self.send_json(status, body, {})
