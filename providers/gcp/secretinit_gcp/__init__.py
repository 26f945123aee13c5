"""The ``gcp-sm`` provider: secrets of Google Cloud Secret Manager.

``gcp-sm://projects/P/secrets/S[/versions/V][#KEY][?version=V]``, regional
secrets as ``gcp-sm://projects/P/locations/L/secrets/S`` (read from the
location's regional endpoint), and the short ``gcp-sm://S`` with the project
from ``[providers.gcp] project``, ``GOOGLE_CLOUD_PROJECT`` or the
credentials. ``sm://P/S[#V]`` reads berglas' references unchanged.
Credentials are Application Default Credentials; reads go through
``google-cloud-secret-manager``, concurrently through the core's runner, and
every payload's CRC32C is verified. See README.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from secretinit import (
    BadReference,
    ConfigError,
    FetchError,
    FetchResult,
    Provider,
    SecretRef,
    Throttled,
    Unreachable,
    run_bounded,
    select_key,
)
from secretinit_gcp._credentials import Identity, fetch_token, find_identity
from secretinit_gcp._errors import ChecksumMismatch, describe_error
from secretinit_gcp._names import (
    DEFAULT_REGIONAL_ENDPOINT,
    Target,
    berglas_target,
    gcp_sm_target,
    regional_endpoint,
)
from secretinit_gcp._session import settle_rest_session

if TYPE_CHECKING:
    import requests
    from google.cloud.secretmanager_v1 import SecretManagerServiceClient

__version__ = "0.1.0"
__all__ = ["BerglasProvider", "SecretManagerProvider"]

DEFAULT_CONCURRENCY = 16
DEFAULT_ENDPOINT = "secretmanager.googleapis.com"
TRANSPORTS = ("grpc", "rest")
# gRPC by measurement (bench/gcp): start-up is a tie, since the library imports
# its gRPC transport either way, and each read costs less than half the CPU.
DEFAULT_TRANSPORT = "grpc"

# google-auth and the client library log warnings (no project found, a retry)
# through the standard library; with no handler they would reach stderr as
# bare lines. secretinit reports every failure itself, naming the secret.
logging.getLogger("google").addHandler(logging.NullHandler())

#: One read: (the location of a regional secret or None, the version's resource name).
Read = tuple[str | None, str]


class SecretManagerProvider(Provider):
    """Google Cloud Secret Manager, read with ``google-cloud-secret-manager``."""

    reference_options = frozenset({"version"})
    config_table = "gcp"  # [providers.gcp], named as the distribution is
    config_options = frozenset(
        {"project", "transport", "endpoint", "regional_endpoint", "concurrency"}
    )

    def __init__(
        self,
        scheme: str,
        options: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(scheme, options, environ)
        self.project = self.option_str("project") or self.environ.get("GOOGLE_CLOUD_PROJECT")
        self.transport = self.option_str("transport", DEFAULT_TRANSPORT) or DEFAULT_TRANSPORT
        if self.transport not in TRANSPORTS:
            raise ConfigError(
                f"[providers.{self.table}] transport must be one of {', '.join(TRANSPORTS)}, "
                f"not {self.transport!r}"
            )
        self.endpoint = self.option_str("endpoint", DEFAULT_ENDPOINT) or DEFAULT_ENDPOINT
        self.regional_template = (
            self.option_str("regional_endpoint", DEFAULT_REGIONAL_ENDPOINT)
            or DEFAULT_REGIONAL_ENDPOINT
        )
        self.concurrency = self.option_count("concurrency", DEFAULT_CONCURRENCY)
        self._session: requests.Session | None = None
        self._identity: Identity | None = None
        self._clients: dict[str | None, SecretManagerServiceClient] = {}

    def target(self, ref: SecretRef) -> Target:
        """What ``ref`` reads (raises :class:`BadReference`)."""
        return gcp_sm_target(ref)

    def check_reference(self, ref: SecretRef) -> None:
        super().check_reference(ref)
        self.target(ref)

    def fetch(self, refs: Sequence[SecretRef], timeout: float) -> FetchResult:
        deadline = time.monotonic() + timeout
        try:
            identity = self._identity_for(deadline)
        except FetchError as err:
            return dict.fromkeys(refs, err)
        results: dict[SecretRef, bytes | FetchError] = {}
        reads: dict[SecretRef, Read] = {}
        for ref in refs:
            target = self.target(ref)
            project = target.project or self.project or identity.project
            if project is None:
                results[ref] = FetchError(
                    f"no project for secret {target.secret!r}: set [providers.{self.table}] "
                    "project or GOOGLE_CLOUD_PROJECT, or write "
                    f"gcp-sm://projects/PROJECT/secrets/{target.secret}"
                )
                continue
            reads[ref] = (target.location, target.name(project))
        try:
            for location in {location for location, _ in reads.values()}:
                self._client(location, identity)
        except Exception as err:  # a client that cannot be built fails every read
            error = describe_error(err, "the secrets", self._endpoint(None), identity.source)
            return {**results, **dict.fromkeys(reads, error)}

        throttled: dict[str, Throttled] = {}  # project -> its RESOURCE_EXHAUSTED in this fetch

        def read_once(read: Read) -> bytes | FetchError:
            # Quotas are per project: a project over its quota gets no more
            # requests in this fetch; the core waits (RetryInfo's delay, if
            # sent), then retries what is left.
            project = read[1].split("/")[1]
            if project in throttled:
                return throttled[project]
            try:
                return self._access(read, deadline)
            except Exception as err:
                error = describe_error(err, read[1], self._endpoint(read[0]), identity.source)
                if isinstance(error, Throttled):
                    throttled.setdefault(project, error)
                return error

        outcomes = run_bounded(
            read_once,
            list(dict.fromkeys(reads.values())),
            concurrency=self.concurrency,
            deadline=deadline,
            late=Unreachable("no answer from Secret Manager within the deadline"),
            name="secretinit-gcp",
        )
        for ref, read in reads.items():
            results[ref] = self._value_of(ref, read, outcomes[read])
        return results

    def _value_of(
        self, ref: SecretRef, read: Read, outcome: bytes | FetchError
    ) -> bytes | FetchError:
        if isinstance(outcome, FetchError) or ref.key is None:
            return outcome
        try:
            return select_key(outcome, ref.key, read[1])
        except FetchError as err:
            return err

    def _access(self, read: Read, deadline: float) -> bytes:
        location, name = read
        client = self._clients[location]
        # retry=None: the library would retry UNAVAILABLE and RESOURCE_EXHAUSTED
        # itself for up to 60 s; the core owns retries and the deadline.
        response = client.access_secret_version(
            name=name, retry=None, timeout=max(0.001, deadline - time.monotonic())
        )
        payload = response.payload
        data = bytes(payload.data)
        if "data_crc32c" in payload:  # Secret Manager sends it for every version
            import google_crc32c

            if google_crc32c.value(data) != payload.data_crc32c:
                raise ChecksumMismatch(f"{name}: the payload does not match its CRC32C checksum")
        return data

    def _identity_for(self, deadline: float) -> Identity:
        if self._session is None:
            import requests

            self._session = requests.Session()
        if self._identity is None:
            self._identity = find_identity(self.environ, self._session, deadline)
        fetch_token(self._identity, self._session, deadline)
        return self._identity

    def _endpoint(self, location: str | None) -> str:
        if location is None:
            return self.endpoint
        return regional_endpoint(self.regional_template, location)

    def _client(self, location: str | None, identity: Identity) -> SecretManagerServiceClient:
        client = self._clients.get(location)
        if client is None:
            from google.cloud.secretmanager_v1 import SecretManagerServiceClient

            endpoint = self._endpoint(location)
            client = SecretManagerServiceClient(
                credentials=identity.credentials,
                transport=self.transport,
                client_options={"api_endpoint": endpoint},
            )
            settle_rest_session(client, endpoint, self.environ, self.concurrency)
            self._clients[location] = client
        return client

    def close(self) -> None:
        """Close the clients' connections; credentials are found again on the next fetch."""
        for client in self._clients.values():
            transport: Any = client.transport  # close() is untyped
            transport.close()
        self._clients.clear()
        self._identity = None
        if self._session is not None:
            self._session.close()
            self._session = None


class BerglasProvider(SecretManagerProvider):
    """berglas' ``sm://PROJECT/SECRET[#VERSION]`` references, read as ``gcp-sm`` reads."""

    reference_options = frozenset()

    def target(self, ref: SecretRef) -> Target:
        """berglas' reading of a reference: ``#`` names a version, not a JSON key."""
        return berglas_target(ref)

    def check_reference(self, ref: SecretRef) -> None:
        if ref.option("destination") is not None:
            raise BadReference(
                "secretinit writes every secret to a file and exports NAME_FILE: "
                "drop berglas' ?destination="
            )
        super().check_reference(ref)

    def _value_of(
        self, ref: SecretRef, read: Read, outcome: bytes | FetchError
    ) -> bytes | FetchError:
        return outcome  # ref.key was the version
