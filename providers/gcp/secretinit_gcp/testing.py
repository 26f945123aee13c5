"""A local fake of Google Cloud Secret Manager and its credential endpoints, for tests and benches.

No Secret Manager emulator is published, so this module is one: enough of
the service for the real ``google-cloud-secret-manager`` client and the real
``google-auth`` credentials to talk to it unchanged.

:class:`FakeSecretManager` serves, on free loopback ports:

- ``AccessSecretVersion`` over HTTPS, as REST (``GET /v1/{name}:access``,
  JSON) and, when asked, as gRPC (the library's own message types), on a
  global endpoint and one endpoint per location given (regional secrets,
  ``projects/P/locations/L/secrets/S``); with Secret Manager's answers: the
  payload and its CRC32C, ``NOT_FOUND``, ``PERMISSION_DENIED``,
  ``FAILED_PRECONDITION`` for a disabled or destroyed version, and injected
  ``UNAVAILABLE``, ``RESOURCE_EXHAUSTED``, ... faults;
- over plain http, a GCE metadata server (``GCE_METADATA_HOST`` and
  ``GCE_METADATA_IP``: detection ping, project id, service account, token)
  and the STS token exchange of an external account file, which count the
  tokens they issue.

A bearer token is accepted if one of these endpoints issued it, or if it is
a JWT that a service account key registered with :meth:`trust_key` signed
(the self-signed JWT the client library makes from a key).
"""

from __future__ import annotations

import base64
import http.server
import json
import secrets as random_tokens
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from secretinit.testing.certificates import Certificates, make_certificates
from secretinit.testing.servers import LoopbackServer, QuietHandler

__all__ = ["Certificates", "FakeSecretManager", "make_certificates"]

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
GRPC_SERVICE = "google.cloud.secretmanager.v1.SecretManagerService"
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
# gRPC status names and the HTTP status the REST API answers each with.
HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}

# What Google's front ends say with each injected fault.
FAULT_MESSAGES = {
    "UNAVAILABLE": "The service is currently unavailable.",
    "RESOURCE_EXHAUSTED": "Quota exceeded for quota metric 'Access requests' and limit "
    "'Access requests per minute per project'.",
    "DEADLINE_EXCEEDED": "Deadline expired before operation could complete.",
    "INTERNAL": "Internal error encountered.",
}

Key = tuple[str, str | None, str]  # (project id, location or None, secret id)


@dataclass
class _Version:
    number: int
    data: bytes
    state: str = "ENABLED"  # ENABLED | DISABLED | DESTROYED


@dataclass
class _Fault:
    code: str
    remaining: int
    retry_after: int | None = None  # seconds, sent as a google.rpc.RetryInfo detail


class Refusal(str):
    """An error message that may carry a ``RetryInfo`` delay (seconds)."""

    retry_after: int | None

    def __new__(cls, message: str, retry_after: int | None = None) -> Refusal:
        refusal = super().__new__(cls, message)
        refusal.retry_after = retry_after
        return refusal


@dataclass
class Access:
    """One ``AccessSecretVersion`` the fake answered."""

    endpoint: str  # "global" or the location of a regional endpoint
    transport: str  # "rest" or "grpc"
    name: str
    code: str  # "OK" or the gRPC status name
    credential: str  # "token", "self-signed-jwt" or "none"


@dataclass
class _State:
    secrets: dict[Key, list[_Version]] = field(default_factory=dict)
    denied: set[Key] = field(default_factory=set)
    faults: dict[Key, _Fault] = field(default_factory=dict)
    corrupt: set[Key] = field(default_factory=set)


class FakeSecretManager:
    """Secret Manager, its regional endpoints, a metadata server and a token endpoint.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. Give
    the client :attr:`endpoint` (or :meth:`regional_endpoint`) as its API
    endpoint; point ``GCE_METADATA_HOST`` and ``GCE_METADATA_IP`` at
    :attr:`metadata_host`.
    """

    def __init__(
        self,
        certificates: Certificates,
        *,
        locations: tuple[str, ...] = (),
        grpc: bool = False,
        project: str = "fake-project",
    ) -> None:
        self.certificates = certificates
        self.locations = locations
        self.serve_grpc = grpc
        #: The project the metadata server reports, and the default of :meth:`add_version`.
        self.project = project
        self.service_account = f"secretinit-test@{project}.iam.gserviceaccount.com"
        #: Seconds each API response waits, to stand in for the network.
        self.latency = 0.0
        #: HTTP status the metadata server's token endpoint answers with, when set.
        self.metadata_token_status: int | None = None
        self.lock = threading.Lock()
        #: Every token handed out, so that tests can search output for them.
        self.issued: list[str] = []
        #: (endpoint, grant) of every token request: ("metadata", "compute"),
        #: ("sts", "token-exchange"). A service account key signs its own JWT
        #: and asks no endpoint.
        self.token_requests: list[tuple[str, str]] = []
        self.metadata_requests: list[str] = []
        self.accesses: list[Access] = []
        self._state = _State()
        self._tokens: set[str] = set()
        self._keys: dict[str, str] = {}  # service account email -> public key PEM
        self._subject_tokens: set[str] = set()
        self._numbers: dict[str, str] = {}
        self._http: list[_Server] = []
        self._rest: dict[str, _Server] = {}
        self._grpc: dict[str, tuple[Any, int]] = {}

    # Planting state.

    def add_version(
        self,
        secret: str,
        data: bytes,
        *,
        project: str | None = None,
        location: str | None = None,
        state: str = "ENABLED",
    ) -> int:
        """Add a version of ``secret`` (``latest`` from now on); return its number."""
        key = (project or self.project, location, secret)
        with self.lock:
            versions = self._state.secrets.setdefault(key, [])
            versions.append(_Version(len(versions) + 1, bytes(data), state))
            return len(versions)

    def set_state(
        self,
        secret: str,
        version: int,
        state: str,
        *,
        project: str | None = None,
        location: str | None = None,
    ) -> None:
        """Disable, destroy or enable one version (``DISABLED``, ``DESTROYED``, ``ENABLED``)."""
        with self.lock:
            entry = self._state.secrets[(project or self.project, location, secret)][version - 1]
            entry.state = state
            if state == "DESTROYED":
                entry.data = b""

    def deny(self, secret: str, *, project: str | None = None, location: str | None = None) -> None:
        """Answer reads of ``secret`` with ``PERMISSION_DENIED``."""
        with self.lock:
            self._state.denied.add((project or self.project, location, secret))

    def fault(
        self,
        secret: str,
        code: str,
        times: int,
        *,
        retry_after: int | None = None,
        project: str | None = None,
        location: str | None = None,
    ) -> None:
        """Answer the next ``times`` reads of ``secret`` with ``code`` (``UNAVAILABLE``, ...).

        ``retry_after``: seconds to send as a ``google.rpc.RetryInfo`` detail, as
        Google's front ends do with ``RESOURCE_EXHAUSTED``.
        """
        key = (project or self.project, location, secret)
        with self.lock:
            self._state.faults[key] = _Fault(code, times, retry_after)

    def corrupt(
        self, secret: str, *, project: str | None = None, location: str | None = None
    ) -> None:
        """Send ``secret``'s payload with a CRC32C that does not match it."""
        with self.lock:
            self._state.corrupt.add((project or self.project, location, secret))

    def trust_key(self, email: str, public_key_pem: str) -> None:
        """Accept self-signed JWTs of this service account key."""
        with self.lock:
            self._keys[email] = public_key_pem

    def add_subject_token(self, token: str) -> None:
        """Accept ``token`` in an STS exchange (an external account's credential source)."""
        with self.lock:
            self._subject_tokens.add(token)

    def reset(self) -> None:
        """Forget every secret, fault, key and token, and the requests seen: a fresh service."""
        with self.lock:
            self._state = _State()
            self._tokens.clear()
            self._keys.clear()
            self._subject_tokens.clear()
            self.issued.clear()
            self.token_requests.clear()
            self.metadata_requests.clear()
            self.accesses.clear()
        self.latency = 0.0
        self.metadata_token_status = None

    def revoke_tokens(self) -> None:
        """Make every issued token invalid: the API answers ``UNAUTHENTICATED`` to it."""
        with self.lock:
            self._tokens.clear()

    def project_number(self, project: str) -> str:
        """The number Secret Manager writes in the names it returns for ``project``."""
        with self.lock:
            return self._numbers.setdefault(project, str(100000000000 + len(self._numbers) * 7919))

    # Addresses.

    @property
    def endpoint(self) -> str:
        """``127.0.0.1:PORT`` of the global REST endpoint."""
        return f"127.0.0.1:{self._rest['global'].port}"

    def regional_endpoint(self, location: str) -> str:
        """``127.0.0.1:PORT`` of ``location``'s REST endpoint."""
        return f"127.0.0.1:{self._rest[location].port}"

    @property
    def grpc_endpoint(self) -> str:
        """``127.0.0.1:PORT`` of the global gRPC endpoint."""
        return f"127.0.0.1:{self._grpc['global'][1]}"

    def grpc_regional_endpoint(self, location: str) -> str:
        """``127.0.0.1:PORT`` of ``location``'s gRPC endpoint."""
        return f"127.0.0.1:{self._grpc[location][1]}"

    @property
    def metadata_host(self) -> str:
        """``127.0.0.1:PORT`` for ``GCE_METADATA_HOST`` and ``GCE_METADATA_IP``."""
        return f"127.0.0.1:{self._http[0].port}"

    @property
    def token_uri(self) -> str:
        """A key file's ``token_uri`` (a field the file must have; nothing answers there)."""
        return f"http://{self.metadata_host}/token"

    @property
    def sts_uri(self) -> str:
        """The STS token exchange endpoint, for an external account file's ``token_url``."""
        return f"http://{self.metadata_host}/v1/token"

    def environment(self, home: str) -> dict[str, str]:
        """The variables that point google-auth and both transports at this fake."""
        return {
            "HOME": home,
            "GCE_METADATA_HOST": self.metadata_host,
            "GCE_METADATA_IP": self.metadata_host,
            "REQUESTS_CA_BUNDLE": str(self.certificates.ca),
            "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(self.certificates.ca),
        }

    def provider_options(
        self, transport: str = "grpc", location: str | None = None
    ) -> dict[str, str]:
        """``[providers.gcp]`` reading from this fake over ``transport``.

        Regional secrets go to ``location``'s endpoint (the first location by default).
        """
        location = location or (self.locations[0] if self.locations else None)
        grpc = transport == "grpc"
        table = {"transport": transport, "endpoint": self.grpc_endpoint if grpc else self.endpoint}
        if location is not None:
            regional = self.grpc_regional_endpoint if grpc else self.regional_endpoint
            table["regional_endpoint"] = regional(location)
        return table

    def write_service_account_key(self, path: Path, *, trusted: bool = True) -> str:
        """Write a service account key file whose token_uri is this fake's; return its PEM key.

        ``trusted``: whether the fake accepts what the key signs.
        """
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        email = f"key-{random_tokens.token_hex(4)}@{self.project}.iam.gserviceaccount.com"
        info = {
            "type": "service_account",
            "project_id": self.project,
            "private_key_id": random_tokens.token_hex(20),
            "private_key": private,
            "client_email": email,
            "client_id": str(random_tokens.randbelow(10**20)),
            "token_uri": self.token_uri,
        }
        path.write_text(json.dumps(info))
        if trusted:
            self.trust_key(email, public.decode())
        return private

    @property
    def tokens_issued(self) -> int:
        """How many tokens the metadata server and token endpoints handed out."""
        with self.lock:
            return len(self.issued)

    # Serving.

    def start(self) -> FakeSecretManager:
        """Listen on free loopback ports and serve from daemon threads."""
        context = self.certificates.server_context()
        self._http = [_Server(_CredentialHandler, self, None, "credentials")]
        for endpoint in ("global", *self.locations):
            self._rest[endpoint] = _Server(_ApiHandler, self, context, endpoint)
        for server in [*self._http, *self._rest.values()]:
            server.start()
        if self.serve_grpc:
            for endpoint in ("global", *self.locations):
                self._grpc[endpoint] = self._start_grpc(endpoint)
        return self

    def _start_grpc(self, endpoint: str) -> tuple[Any, int]:
        from concurrent import futures

        import grpc  # type: ignore[import-untyped]
        from google.cloud.secretmanager_v1.types import resources, service

        def access(request: Any, context: Any) -> Any:
            metadata = dict(context.invocation_metadata())
            code, answer = self.access(
                endpoint, "grpc", request.name, metadata.get("authorization")
            )
            if code != "OK":
                delay = getattr(answer, "retry_after", None)
                if delay is not None:
                    context.abort_with_status(_grpc_status(code, answer, delay))
                context.abort(getattr(grpc.StatusCode, code), answer)
            payload = resources.SecretPayload(data=answer["data"], data_crc32c=answer["crc32c"])
            return service.AccessSecretVersionResponse(name=answer["name"], payload=payload)

        handler = grpc.method_handlers_generic_handler(
            GRPC_SERVICE,
            {
                "AccessSecretVersion": grpc.unary_unary_rpc_method_handler(
                    access,
                    request_deserializer=service.AccessSecretVersionRequest.deserialize,
                    response_serializer=service.AccessSecretVersionResponse.serialize,
                )
            },
        )
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
        server.add_generic_rpc_handlers((handler,))
        credentials = grpc.ssl_server_credentials(
            [(self.certificates.key.read_bytes(), self.certificates.cert.read_bytes())]
        )
        port = server.add_secure_port("127.0.0.1:0", credentials)
        server.start()
        return server, port

    def stop(self) -> None:
        """Stop serving and close the listening sockets."""
        for server in [*self._http, *self._rest.values()]:
            server.stop()
        for grpc_server, _port in self._grpc.values():
            grpc_server.stop(grace=None)

    def __enter__(self) -> FakeSecretManager:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # The service.

    def access(
        self, endpoint: str, transport: str, name: str, authorization: str | None
    ) -> tuple[str, Any]:
        """("OK", answer) or (gRPC status name, message) for one AccessSecretVersion."""
        if self.latency:
            time.sleep(self.latency)
        credential = self._credential(authorization)
        code, answer = self._answer(endpoint, name, credential)
        with self.lock:
            self.accesses.append(Access(endpoint, transport, name, code, credential))
        return code, answer

    def _answer(self, endpoint: str, name: str, credential: str) -> tuple[str, Any]:
        if credential == "none":
            return "UNAUTHENTICATED", (
                "Request had invalid authentication credentials. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential."
            )
        parts = name.split("/")
        regional = len(parts) == 8 and parts[2] == "locations"
        if not (
            (len(parts) == 6 or regional)
            and parts[0] == "projects"
            and parts[-4] == "secrets"
            and parts[-2] == "versions"
        ):
            return "INVALID_ARGUMENT", f"Invalid resource field value in the request: {name}"
        location = parts[3] if regional else None
        if location != (None if endpoint == "global" else endpoint):
            where = "the global endpoint" if endpoint == "global" else f"endpoint {endpoint}"
            return "INVALID_ARGUMENT", f"Location {location or 'global'} is not served by {where}."
        project, secret, wanted = parts[1], parts[-3], parts[-1]
        key = (self._project_id(project), location, secret)
        with self.lock:
            fault = self._state.faults.get(key)
            if fault is not None and fault.remaining > 0:
                fault.remaining -= 1
                return fault.code, Refusal(
                    FAULT_MESSAGES.get(fault.code, fault.code), fault.retry_after
                )
            if key in self._state.denied:
                return "PERMISSION_DENIED", (
                    f"Permission 'secretmanager.versions.access' denied for resource '{name}' "
                    "(or it may not exist)."
                )
            versions = list(self._state.secrets.get(key, []))
            corrupt = key in self._state.corrupt
        # Secret Manager answers with the project's number, whichever way it was named.
        secret_name = "/".join(["projects", self.project_number(key[0]), *parts[2:-2]])
        if not versions:
            return "NOT_FOUND", f"Secret [{secret_name}] not found or has no versions."
        if wanted == "latest":
            version: _Version | None = versions[-1]
        elif wanted.isdigit() and 0 < int(wanted) <= len(versions):
            version = versions[int(wanted) - 1]
        else:
            version = None
        if version is None:
            return "NOT_FOUND", f"Secret Version [{secret_name}/versions/{wanted}] not found."
        full = f"{secret_name}/versions/{version.number}"
        if version.state != "ENABLED":
            return "FAILED_PRECONDITION", f"Secret Version [{full}] is in {version.state} state."
        checksum = crc32c(version.data) ^ (0xFFFF if corrupt else 0)
        return "OK", {"name": full, "data": version.data, "crc32c": checksum}

    def _project_id(self, project: str) -> str:
        with self.lock:
            for project_id, number in self._numbers.items():
                if number == project:
                    return project_id
        return project

    def _credential(self, authorization: str | None) -> str:
        if not authorization or not authorization.startswith("Bearer "):
            return "none"
        token = authorization.removeprefix("Bearer ")
        with self.lock:
            if token in self._tokens:
                return "token"
        return "self-signed-jwt" if self._verify_jwt(token) else "none"

    def _verify_jwt(self, token: str) -> bool:
        """Whether ``token`` is a JWT signed by a trusted key, for the API."""
        from google.auth import jwt

        decode: Any = jwt.decode  # untyped in google-auth
        try:
            claims = decode(token, verify=False)
        except ValueError:
            return False
        with self.lock:
            key = self._keys.get(str(claims.get("iss")))
        if key is None:
            return False
        try:
            claims = decode(token, certs=key, verify=True, audience=None)
        except ValueError:
            return False
        # A self-signed JWT names the API by scope or by audience.
        return SCOPE in str(claims.get("scope", "")).split() or str(
            claims.get("aud", "")
        ).startswith("https://secretmanager.")

    def issue_token(self, endpoint: str, grant: str) -> dict[str, Any]:
        """A new access token's JSON, counted."""
        token = "ya29.fake-" + random_tokens.token_hex(16)
        with self.lock:
            self._tokens.add(token)
            self.issued.append(token)
            self.token_requests.append((endpoint, grant))
        return {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}

    def sts_token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """(status, JSON) of the STS endpoint for one token exchange."""
        with self.lock:
            known = form.get("subject_token") in self._subject_tokens
        if not known:
            return 400, {
                "error": "invalid_grant",
                "error_description": "The provided subject token is invalid.",
            }
        answer = self.issue_token("sts", "token-exchange")
        answer["issued_token_type"] = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105
        return 200, answer


def crc32c(data: bytes) -> int:
    """The CRC32C (Castagnoli) of ``data``, as Secret Manager reports it."""
    import google_crc32c

    return int(google_crc32c.value(data))


class _Server(LoopbackServer):
    def __init__(
        self,
        handler: type[http.server.BaseHTTPRequestHandler],
        fake: FakeSecretManager,
        context: ssl.SSLContext | None,
        endpoint: str,
    ) -> None:
        super().__init__(handler, context)
        self.fake = fake
        self.endpoint = endpoint


class _Handler(QuietHandler):
    server: _Server


class _ApiHandler(_Handler):
    """``GET /v1/{name}:access``, as the REST transport of the client library asks."""

    def do_GET(self) -> None:  # noqa: N802 - http.server dispatches on this name
        path = urlsplit(self.path).path
        if not (path.startswith("/v1/") and path.endswith(":access")):
            self.send_json(404, _rest_error("NOT_FOUND", f"no such method: {path}"))
            return
        name = path.removeprefix("/v1/").removesuffix(":access")
        fake = self.server.fake
        code, answer = fake.access(
            self.server.endpoint, "rest", name, self.headers.get("Authorization")
        )
        if code != "OK":
            self.send_json(HTTP_STATUS[code], _rest_error(code, answer))
            return
        self.send_json(
            200,
            {
                "name": answer["name"],
                "payload": {
                    "data": base64.b64encode(answer["data"]).decode(),
                    # int64 travels as a string in JSON
                    "dataCrc32c": str(answer["crc32c"]),
                },
            },
        )


def _rest_error(code: str, message: str) -> dict[str, Any]:
    error: dict[str, Any] = {"code": HTTP_STATUS[code], "message": message, "status": code}
    delay = getattr(message, "retry_after", None)
    if delay is not None:
        error["details"] = [{"@type": RETRY_INFO, "retryDelay": f"{delay}s"}]
    return {"error": error}


def _grpc_status(code: str, message: str, delay: int) -> Any:
    """A gRPC status with a ``RetryInfo`` detail, as ``context.abort_with_status`` takes it."""
    from google.protobuf import any_pb2, duration_pb2  # type: ignore[import-untyped]
    from google.rpc import code_pb2, error_details_pb2, status_pb2  # type: ignore[import-untyped]
    from grpc_status import rpc_status  # type: ignore[import-untyped]

    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=delay)))
    status = status_pb2.Status(code=getattr(code_pb2, code), message=str(message), details=[detail])
    return rpc_status.to_status(status)


class _CredentialHandler(_Handler):
    """The metadata server (GET, ``Metadata-Flavor: Google``) and the token endpoints (POST)."""

    def do_GET(self) -> None:  # noqa: N802 - http.server dispatches on this name
        fake = self.server.fake
        path = urlsplit(self.path).path
        with fake.lock:
            fake.metadata_requests.append(path)
        flavor = {"Metadata-Flavor": "Google"}
        if self.headers.get("Metadata-Flavor") != "Google":
            self.send_body(403, b"Missing Metadata-Flavor:Google header.", "text/html", flavor)
            return
        accounts = "/computeMetadata/v1/instance/service-accounts/"
        # The account is named "default" or by its email, as on a real server.
        account, _, leaf = path.removeprefix(accounts).partition("/")
        known_account = path.startswith(accounts) and account in ("default", fake.service_account)
        if path == "/":  # google-auth's detection ping
            self.send_body(200, b"computeMetadata/\n", "application/text", flavor)
        elif path == "/computeMetadata/v1/project/project-id":
            self.send_body(200, fake.project.encode(), "application/text", flavor)
        elif known_account and leaf == "":
            body = {"aliases": ["default"], "email": fake.service_account, "scopes": [SCOPE]}
            self.send_json(200, body, flavor)
        elif known_account and leaf == "token":
            if fake.metadata_token_status is not None:
                message = b"The service account has no permission to get a token."
                self.send_body(fake.metadata_token_status, message, "text/html", flavor)
                return
            self.send_json(200, fake.issue_token("metadata", "compute"), flavor)
        else:
            # Unknown keys (the universe domain among them) are 404s on a real server too.
            self.send_body(404, b"Not Found", "text/html", flavor)

    def do_POST(self) -> None:  # noqa: N802 - http.server dispatches on this name
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode()
        if self.headers.get("Content-Type", "").startswith("application/json"):
            form = {k: str(v) for k, v in json.loads(raw or "{}").items()}
        else:
            form = {k: v[-1] for k, v in parse_qs(raw).items()}
        path = urlsplit(self.path).path
        if path == "/v1/token":
            status, body = fake.sts_token(form)
        else:
            status, body = 404, {"error": "not_found"}
        self.send_json(status, body)
