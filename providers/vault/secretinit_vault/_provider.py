"""The ``vault`` provider: ``vault://MOUNT/PATH[#KEY][?version=N&encoding=base64]``."""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from secretinit import (
    BadReference,
    FetchError,
    FetchResult,
    NotFound,
    Provider,
    SecretRef,
    Unreachable,
    encode_value,
    select_key,
)
from secretinit_vault._auth import Login
from secretinit_vault._client import make_client, vault_error
from secretinit_vault._settings import CONFIG_OPTIONS, TOKEN_VARIABLES, read_settings

LOGGER = logging.getLogger("secretinit.vault")
REVOKE_TIMEOUT = 5.0
ENCODINGS = ("base64",)
T = TypeVar("T", bound=Hashable)

# A read: the location and the KV v2 version (None: the latest).
Read = tuple[str, str | None]


@dataclass(frozen=True)
class VaultLease:
    """A lease a read returned (``database/creds/app``), kept for renewal."""

    path: str
    lease_id: str
    duration: int
    renewable: bool


@dataclass(frozen=True)
class _Mount:
    path: str  # "secret/", as Vault names it
    kv_version: str | None  # "1", "2", or None for any other engine


class VaultProvider(Provider):
    """HashiCorp Vault and OpenBao: KV versions 1 and 2, and any other readable path.

    One read per distinct path (and version), however many keys are taken
    from it; distinct paths are read concurrently over one pooled session.
    """

    reference_options = frozenset({"version", "encoding"})
    config_options = CONFIG_OPTIONS
    credential_variables = frozenset(TOKEN_VARIABLES)

    def __init__(
        self,
        scheme: str,
        options: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(scheme, options, environ)
        self.settings = read_settings(self.options, self.environ, self.option_str)
        if self.settings.verify is False:
            import urllib3

            # The warning below says it once; urllib3 would repeat it on every request.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            LOGGER.warning(
                "VAULT_SKIP_VERIFY: the certificate of %s is not verified",
                self.settings.address,
                extra={"fields": {"event": "vault_skip_verify"}},
            )
        self.leases: list[VaultLease] = []
        self._login = Login(self.settings)
        self._client: Any = None
        self._session: Any = None
        self._mounts: dict[str, _Mount] = {}

    def check_reference(self, ref: SecretRef) -> None:
        super().check_reference(ref)
        segments = ref.location.split("/")
        if len(segments) < 2 or any(s in ("", ".", "..") for s in segments):
            raise BadReference(
                f"{ref.location!r} is not a Vault path: write MOUNT/PATH, such as "
                "secret/app/db, with no empty, '.' or '..' part"
            )
        version = ref.option("version")
        if version is not None and not (version.isdigit() and int(version) > 0):
            raise BadReference(f"?version={version} is not a version: a whole number from 1")
        encoding = ref.option("encoding")
        if encoding is not None:
            if encoding not in ENCODINGS:
                raise BadReference(f"?encoding={encoding} is not known (known: base64)")
            if ref.key is None:
                raise BadReference("?encoding= decodes one field: add #KEY")

    def fetch(self, refs: Sequence[SecretRef], timeout: float) -> FetchResult:
        deadline = time.monotonic() + timeout
        try:
            client = self._connect(deadline)
        except FetchError as err:  # no token: every reference fails alike
            return dict.fromkeys(refs, err)
        reads: dict[Read, list[SecretRef]] = {}
        for ref in refs:
            reads.setdefault((ref.location, ref.option("version")), []).append(ref)
        mounts = self._find_mounts(client, {location for location, _ in reads}, deadline)

        def read(item: Read) -> dict[str, Any]:
            mount = mounts[item[0]]
            if isinstance(mount, FetchError):
                raise mount
            return self._read(client, item[0], item[1], mount)

        documents = self._parallel(read, list(reads), deadline)
        results: dict[SecretRef, bytes | FetchError] = {}
        for item, item_refs in reads.items():
            document = documents[item]
            for ref in item_refs:
                results[ref] = (
                    document if isinstance(document, FetchError) else _value(ref, document)
                )
        return results

    def close(self) -> None:
        """Revoke the token secretinit logged in for, unless a fetched lease depends on it."""
        if self._client is None:
            return
        try:
            if self._login.logged_in and self.leases:
                LOGGER.info(
                    "vault: keeping the login token: %d fetched secrets hold leases that "
                    "would end with it",
                    len(self.leases),
                    extra={"fields": {"event": "vault_token_kept", "leases": len(self.leases)}},
                )
            elif self._login.logged_in:
                self._session.deadline = time.monotonic() + REVOKE_TIMEOUT
                self._client.auth.token.revoke_self()
        except Exception as err:  # the secrets are written: a failed revocation only warns
            reason = self._login.scrub(str(vault_error(err, "revoking the token", "Vault")))
            LOGGER.warning(
                "vault: the login token could not be revoked (%s); it expires with its TTL",
                reason,
                extra={"fields": {"event": "vault_revoke_failed"}},
            )
        finally:
            self._session.close()
            self._client = None

    def _connect(self, deadline: float) -> Any:
        if self._client is None:
            self._client, self._session = make_client(self.settings)
        self._session.deadline = deadline
        if not self._client.token:
            self._client.token = self._login.token(self._client)
        return self._client

    def _find_mounts(
        self, client: Any, locations: set[str], deadline: float
    ) -> dict[str, _Mount | FetchError]:
        """The mount of each location, asking Vault once per mount where it can.

        Vault's CLI asks ``sys/internal/ui/mounts/PATH`` too. One location per
        first path segment is asked first; whatever that leaves uncovered (a
        denied path, nested mounts) is asked in a second round.
        """
        found: dict[str, _Mount | FetchError] = {}
        first_round = {loc.split("/", 1)[0]: loc for loc in sorted(locations)}
        for probes in (sorted(first_round.values()), sorted(locations)):
            probes = [loc for loc in probes if loc not in found and not self._mount_of(loc)]
            for loc, mount in self._parallel(self._probe, probes, deadline).items():
                found[loc] = self._mount_of(loc) or mount
        for loc in locations:
            found.setdefault(loc, self._mount_of(loc) or _Mount(loc, None))
        return found

    def _mount_of(self, location: str) -> _Mount | None:
        matches = [m for path, m in self._mounts.items() if (location + "/").startswith(path)]
        return max(matches, key=lambda m: len(m.path), default=None)

    def _probe(self, location: str) -> _Mount:
        try:
            response = self._client.adapter.get(f"/v1/sys/internal/ui/mounts/{quote(location)}")
        except Exception as err:
            if "preflight capability check" in str(err):
                # No mount here, or a token with no access to it: reading the
                # path as a generic secret gives the precise error.
                return _Mount(location, None)
            raise
        data = _field(response, "data", f"the mount of {location}")
        options = data.get("options") or {}
        kv = data.get("type") in ("kv", "generic")
        mount = _Mount(str(data.get("path", "")), str(options.get("version", "1")) if kv else None)
        if mount.path:
            self._mounts[mount.path] = mount
        return mount

    def _read(
        self, client: Any, location: str, version: str | None, mount: _Mount
    ) -> dict[str, Any]:
        what = location + (f" version {version}" if version else "")
        path = location[len(mount.path) :]
        if mount.kv_version and not path:
            raise NotFound(f"{location} is a KV mount, not a secret in it")
        if version and mount.kv_version != "2":
            raise FetchError(f"?version applies to KV version 2 only, and {location} is not on one")
        try:
            if mount.kv_version == "2":
                response = client.secrets.kv.v2.read_secret_version(
                    path=path,
                    mount_point=mount.path.rstrip("/"),
                    version=version,
                    raise_on_deleted_version=True,
                )
                return _field(_field(response, "data", what), "data", what)
            if mount.kv_version is not None:
                response = client.secrets.kv.v1.read_secret(path, mount.path.rstrip("/"))
                return _field(response, "data", what)
            response = client.read(quote(location))
        except Exception as err:
            error = vault_error(err, what, self.settings.address)
            if isinstance(error, NotFound) and path.startswith(("data/", "metadata/")):
                error = NotFound(f"{error} (KV version 2 paths are written without data/)")
            raise error from None
        if response is None:
            raise NotFound(f"{what} does not exist")
        if isinstance(response, dict) and response.get("lease_id"):
            lease = VaultLease(
                location,
                str(response["lease_id"]),
                int(response.get("lease_duration") or 0),
                bool(response.get("renewable")),
            )
            self.leases.append(lease)
            LOGGER.debug(
                "vault: %s holds a lease of %d s (renewable: %s)",
                location,
                lease.duration,
                lease.renewable,
                extra={"fields": {"event": "vault_lease", "path": location}},
            )
        return _field(response, "data", what)

    def _parallel(
        self, work: Callable[[T], Any], items: Sequence[T], deadline: float
    ) -> dict[T, Any]:
        """``work`` on each item, at most ``concurrency`` at once, until ``deadline``."""
        results: dict[T, Any] = {}
        if not items:
            return results
        pool = ThreadPoolExecutor(min(self.settings.concurrency, len(items)), "secretinit-vault")
        futures = {pool.submit(work, item): item for item in items}
        wait(futures, timeout=max(0.0, deadline - time.monotonic()))
        # Requests still running end by the deadline too (the session clamps them).
        pool.shutdown(wait=False, cancel_futures=True)
        for future, item in futures.items():
            if not future.done():
                results[item] = Unreachable("no answer from Vault before the deadline")
            elif future.exception() is not None:
                error = vault_error(future.exception(), str(item), self.settings.address)  # type: ignore[arg-type]
                results[item] = type(error)(self._login.scrub(str(error)))
            else:
                results[item] = future.result()
        return results


def _field(response: Any, name: str, what: str) -> dict[str, Any]:
    """``response[name]``, which must be a JSON object."""
    if not isinstance(response, dict):
        raise FetchError(f"{what}: Vault's answer is not a JSON object (is VAULT_ADDR Vault?)")
    value = response.get(name)
    if not isinstance(value, dict):
        raise NotFound(f"{what} holds no data")
    return value


def _value(ref: SecretRef, data: Mapping[str, Any]) -> bytes | FetchError:
    what = ref.location
    if ref.key is None:
        return encode_value(dict(data))
    try:
        value = select_key(data, ref.key, what)
        if ref.option("encoding") == "base64":
            value = base64.b64decode(value, validate=True)
    except FetchError as err:
        return err
    except (binascii.Error, ValueError):
        return FetchError(f"field {ref.key!r} of {what} is not valid base64 (?encoding=base64)")
    return value
