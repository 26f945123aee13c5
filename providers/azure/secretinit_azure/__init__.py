"""The ``azure-kv`` provider: ``azure-kv://VAULT/NAME[/VERSION][#KEY]`` from Azure Key Vault.

``VAULT`` is a vault name (``https://VAULT.vault.azure.net``) or a host
(``myvault.vault.azure.cn``, a private endpoint's name, ``127.0.0.1:8443``).
Credentials come from ``DefaultAzureCredential`` unless ``[providers.azure]
credential`` pins one kind. Reads go through one ``SecretClient`` per vault,
concurrently with a bound (the core's :func:`secretinit.run_bounded`); see
README.md for the options and errors.
"""

from __future__ import annotations

import logging
import os
import re
import threading
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
from secretinit_azure._credential import CREDENTIALS, SharedTokenCredential, make_credential
from secretinit_azure._errors import describe_error, is_vault_wide
from secretinit_azure._values import ENCODINGS, decode_value

if TYPE_CHECKING:
    from azure.keyvault.secrets import SecretClient

__version__ = "0.1.0"
__all__ = ["AzureKeyVaultProvider"]

DEFAULT_CONCURRENCY = 16
PUBLIC_CLOUD_SUFFIX = "vault.azure.net"
# Key Vault's own rules: a vault name is 3-24 letters, digits and single
# hyphens, starting with a letter; a secret name 1-127 letters, digits and
# hyphens; a version 32 hexadecimal digits.
_VAULT_NAME = re.compile(r"[A-Za-z](?!.*--)[A-Za-z0-9-]{1,22}[A-Za-z0-9]\Z")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?(?::(\d{{1,5}}))?\Z")
_SECRET_NAME = re.compile(r"[0-9A-Za-z-]{1,127}\Z")
_VERSION = re.compile(r"[0-9A-Fa-f]{32}\Z")

# The Azure SDK logs warnings (a credential that failed, a retry) through the
# standard library; with no handler installed they would reach stderr as
# unformatted lines next to secretinit's own. Every failure is reported by
# secretinit instead, naming the secret.
logging.getLogger("azure").addHandler(logging.NullHandler())


class AzureKeyVaultProvider(Provider):
    """Secrets of Azure Key Vault, read with ``azure-keyvault-secrets``."""

    reference_options = frozenset({"encoding"})
    config_table = "azure"  # [providers.azure], as the other first-party tables are named
    config_options = frozenset(
        {"credential", "ca_bundle", "verify_challenge_resource", "concurrency"}
    )
    credential_variables = frozenset(
        {"AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PASSWORD", "AZURE_PASSWORD"}
    )

    def __init__(
        self,
        scheme: str,
        options: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(scheme, options, environ)
        self.credential_kind = self.option_str("credential", "default") or "default"
        if self.credential_kind not in CREDENTIALS:
            raise ConfigError(
                f"[providers.{self.table}] credential: must be one of "
                f"{', '.join(CREDENTIALS)}, not {self.credential_kind!r}"
            )
        self.ca_bundle = self.option_str("ca_bundle")
        if self.ca_bundle is not None and not os.path.isfile(self.ca_bundle):
            raise ConfigError(
                f"[providers.{self.table}] ca_bundle: {self.ca_bundle!r} is not a file"
            )
        self.verify_challenge_resource = self.option_bool("verify_challenge_resource", True)
        self.concurrency = self.option_count("concurrency", DEFAULT_CONCURRENCY)
        self._credential: SharedTokenCredential | None = None
        self._clients: dict[str, SecretClient] = {}
        self._clients_lock = threading.Lock()  # first reads of several vaults build clients at once

    def check_reference(self, ref: SecretRef) -> None:
        super().check_reference(ref)
        vault, _, rest = ref.location.partition("/")
        if "." in vault or ":" in vault:
            port = _HOST.match(vault)
            if port is None or (port.group(1) and not 0 < int(port.group(1)) < 65536):
                raise BadReference(f"{vault!r} is not a valid Key Vault host name")
        elif not _VAULT_NAME.match(vault):
            raise BadReference(
                f"{vault!r} is not a Key Vault name (3-24 letters, digits and single hyphens, "
                "starting with a letter) nor a host name"
            )
        name, _, version = rest.partition("/")
        if not name:
            raise BadReference(
                "expected azure-kv://VAULT/NAME[/VERSION]: the secret NAME is missing"
            )
        if not _SECRET_NAME.match(name):
            raise BadReference(
                f"secret name {name!r} is not valid: 1-127 letters, digits and hyphens"
            )
        if "/" in rest and not _VERSION.match(version):
            raise BadReference(f"secret version {version!r} is not 32 hexadecimal digits")
        encoding = ref.option("encoding")
        if encoding is not None and encoding not in ENCODINGS:
            raise BadReference(f"encoding must be one of {', '.join(ENCODINGS)}, not {encoding!r}")

    def fetch(self, refs: Sequence[SecretRef], timeout: float) -> FetchResult:
        deadline = time.monotonic() + timeout
        reads: dict[tuple[str, str, str | None], list[SecretRef]] = {}
        for ref in refs:
            reads.setdefault(_read_of(ref), []).append(ref)
        by_vault: dict[str, list[tuple[str, str, str | None]]] = {}
        for read in reads:
            by_vault.setdefault(read[0], []).append(read)

        # Each vault's first read goes alone: it answers Key Vault's challenge
        # and fetches the token that every later read reuses. Started together,
        # N first reads would each fetch a token. If that first read fails for a
        # reason that is not the secret's own (no token, vault unreachable,
        # throttled), the rest of the vault's reads fail with it, untried.
        throttled: dict[str, Throttled] = {}  # vault URL -> its 429 in this fetch

        def read_once(item: tuple[str, str, str | None]) -> tuple[str, dict[str, str]] | FetchError:
            # A vault that answered 429 gets no more requests in this fetch: the
            # core waits its Retry-After, then retries what is left.
            if item[0] in throttled:
                return throttled[item[0]]
            outcome = self._read(item, deadline)
            if isinstance(outcome, Throttled):
                throttled.setdefault(item[0], outcome)
            return outcome

        def run(items: Sequence[tuple[str, str, str | None]]) -> dict[Any, Any]:
            return run_bounded(
                read_once,
                items,
                concurrency=self.concurrency,
                deadline=deadline,
                late=Unreachable("no answer from Key Vault within the deadline"),
                name="secretinit-azure-kv",
            )

        firsts = [reads_of_vault[0] for reads_of_vault in by_vault.values()]
        outcomes = run(firsts)
        rest = []
        for first in firsts:
            outcome = outcomes[first]
            others = by_vault[first[0]][1:]
            if isinstance(outcome, FetchError) and is_vault_wide(outcome):
                outcomes.update(dict.fromkeys(others, outcome))
            else:
                rest.extend(others)
        outcomes.update(run(rest))

        results: dict[SecretRef, bytes | FetchError] = {}
        for read, read_refs in reads.items():
            for ref in read_refs:
                results[ref] = self._value_of(ref, outcomes[read])
        return results

    def _read(
        self, read: tuple[str, str, str | None], deadline: float
    ) -> tuple[str, dict[str, str]] | FetchError:
        vault_url, name, version = read
        what = f"Key Vault secret {name}" + (f" version {version}" if version else "")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return Unreachable(f"no answer from {vault_url} within the deadline")
        try:
            secret = self._client(vault_url).get_secret(
                name,
                version,
                # No retry by azure-core: the core owns them, with the deadline and
                # Retry-After in view; the SDK's own would sleep past the deadline
                # and multiply the requests of a throttled fleet.
                retry_total=0,
                timeout=remaining,
                connection_timeout=remaining,
                read_timeout=remaining,
            )
        except Exception as err:
            return describe_error(err, what, vault_url, self.credential_kind)
        return (secret.value or "", dict(secret.properties.tags or {}))

    def _value_of(
        self, ref: SecretRef, outcome: tuple[str, dict[str, str]] | FetchError
    ) -> bytes | FetchError:
        if isinstance(outcome, FetchError):
            return outcome
        what = f"Key Vault secret {ref.location}"
        try:
            value = decode_value(outcome[0], outcome[1], ref.option("encoding"), what)
            return value if ref.key is None else select_key(value, ref.key, what)
        except FetchError as err:
            return err

    def _client(self, vault_url: str) -> SecretClient:
        with self._clients_lock:
            client = self._clients.get(vault_url)
            if client is None:
                client = self._clients[vault_url] = self._new_client(vault_url)
            return client

    def _new_client(self, vault_url: str) -> SecretClient:
        from azure.core.pipeline.transport import RequestsTransport
        from azure.keyvault.secrets import SecretClient
        from requests import Session
        from requests.adapters import HTTPAdapter

        if self._credential is None:
            self._credential = SharedTokenCredential(
                make_credential(self.credential_kind, self.environ)
            )
        # One connection per concurrent read, kept alive between reads.
        session = Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=self.concurrency)
        session.mount("https://", adapter)
        transport = RequestsTransport(
            session=session,
            session_owner=True,
            connection_verify=self.ca_bundle if self.ca_bundle else True,
        )
        return SecretClient(
            vault_url,
            self._credential,
            verify_challenge_resource=self.verify_challenge_resource,
            transport=transport,
        )

    def close(self) -> None:
        """Close every vault's client and the credential."""
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        if self._credential is not None:
            self._credential.close()
            self._credential = None


def vault_url(location: str) -> str:
    """``https://`` + the vault's host: a bare name is a vault of Azure's public cloud."""
    vault = location.partition("/")[0]
    host = vault if "." in vault or ":" in vault else f"{vault}.{PUBLIC_CLOUD_SUFFIX}"
    return f"https://{host.lower()}"


def _read_of(ref: SecretRef) -> tuple[str, str, str | None]:
    _vault, _, rest = ref.location.partition("/")
    name, _, version = rest.partition("/")
    return vault_url(ref.location), name, version or None
