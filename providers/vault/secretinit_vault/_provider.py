"""The ``vault`` provider: ``vault://MOUNT/PATH[#KEY][?version=N&encoding=base64]``."""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

from secretinit import (
    BadReference,
    Cancel,
    FetchError,
    FetchResult,
    NotChecked,
    NotFound,
    Provider,
    SecretRef,
    Throttled,
    Unreachable,
    encode_value,
    run_bounded,
    select_key,
)
from secretinit_vault._auth import Login
from secretinit_vault._client import TokenRejected, make_client, scrubbed, vault_error
from secretinit_vault._leases import HeldLease, LeaseBook, Read
from secretinit_vault._log import LOGGER, debug
from secretinit_vault._mounts import Mount, MountTable, field
from secretinit_vault._settings import CONFIG_OPTIONS, TOKEN_VARIABLES, read_settings

REVOKE_TIMEOUT = 5.0
ENCODINGS = ("base64",)
K = TypeVar("K", bound=Hashable)


class VaultProvider(Provider):
    """HashiCorp Vault and OpenBao: KV versions 1 and 2, and any other readable path.

    One read per distinct path (and version), however many keys are taken
    from it; distinct paths are read concurrently over one pooled session.
    With ``--refresh``, leases and the login token live on from run to run
    (secretinit_vault._leases).
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
                "vault: VAULT_SKIP_VERIFY is on: the certificate of %s is not verified",
                self.settings.address,
                extra={"fields": {"event": "vault_skip_verify"}},
            )
        self._book = LeaseBook(self.settings)
        self._abandoned = False
        self._login = Login(self.settings)
        self._client: Any = None
        self._session: Any = None
        self._mounts = MountTable()
        self._throttled = False  # a 429 seen: later attempts probe with one read first

    def check_reference(self, ref: SecretRef) -> None:
        super().check_reference(ref)
        segments = ref.location.split("/")
        if len(segments) < 2 or any(s in ("", ".", "..") for s in segments):
            raise BadReference(
                f"{ref.location!r} is not a Vault path: write MOUNT/PATH, such as "
                "secret/app/db, with no empty, '.' or '..' part"
            )
        version = ref.option("version")
        if version is not None and not (
            version.isascii() and version.isdigit() and int(version) > 0
        ):
            raise BadReference(f"?version={version} is not a version: a whole number from 1")
        encoding = ref.option("encoding")
        if encoding is not None:
            if encoding not in ENCODINGS:
                raise BadReference(f"?encoding={encoding} is not known (known: base64)")
            if ref.key is None:
                raise BadReference("?encoding= decodes one field: add #KEY")

    @property
    def leases(self) -> list[HeldLease]:
        """The leases read anew in this run (``database/creds/app``)."""
        return self._book.fetched

    def fetch(self, refs: Sequence[SecretRef], timeout: float) -> FetchResult:
        deadline = time.monotonic() + timeout
        if self.checking and self.settings.single_use:
            return self._check_single_use(refs, deadline)
        try:
            client = self._connect(deadline)
        except FetchError as err:  # no token: every reference fails alike
            return dict.fromkeys(refs, err)
        reads: dict[Read, list[SecretRef]] = {}
        for ref in refs:
            reads.setdefault((ref.location, ref.option("version")), []).append(ref)
        documents = self._held(client, list(reads), deadline) if self.refreshing else {}
        fresh = [read for read in reads if read not in documents]
        mounts = self._mounts.find(
            client,
            {location for location, _ in fresh},
            lambda work, items: self._run(work, items, deadline),
        )

        def read(item: Read) -> dict[str, Any]:
            mount = mounts[item[0]]
            if isinstance(mount, FetchError):
                raise mount
            return self._read(client, item[0], item[1], mount)

        items = fresh
        if self._throttled and len(items) > 1:
            # Throttled before: one read alone first, as a probe, so that a store
            # still at its limit costs this attempt one refused request, not N.
            documents.update(self._run(read, items[:1], deadline))
            if isinstance(probe := documents[items[0]], Throttled):
                documents.update(dict.fromkeys(items[1:], probe))
            else:
                documents.update(self._run(read, items[1:], deadline))
        else:
            documents.update(self._run(read, items, deadline))
        results: dict[SecretRef, bytes | FetchError] = {}
        for item, item_refs in reads.items():
            document = documents[item]
            for ref in item_refs:
                results[ref] = (
                    document if isinstance(document, FetchError) else _value(ref, document)
                )
        return results

    def _held(self, client: Any, reads: list[Read], deadline: float) -> dict[Read, Any]:
        """What leases kept from the last run answer (their data), renewed where due.

        A read missing from the result is read anew: no lease, or one at its
        end or refused at renewal. A renewal that failed for a while is that
        read's error (the core retries it).
        """
        held = {read: lease for read in reads if (lease := self._book.answer(read)) is not None}
        due = [read for read, lease in held.items() if self._book.due(lease)]
        renewed = self._run(lambda read: self._book.renew(client, held[read]), due, deadline)
        answers: dict[Read, Any] = {}
        for read, lease in held.items():
            outcome = renewed.get(read, lease)
            if isinstance(outcome, FetchError):
                answers[read] = outcome
            elif outcome is not None:
                answers[read] = outcome.data
        return answers

    def _check_single_use(self, refs: Sequence[SecretRef], deadline: float) -> FetchResult:
        """``secretinit check`` with a single-use login: check around it, never use it."""
        client = self._client_until(deadline)
        try:
            checked = self._login.check_wrapped_secret_id(client)
        except FetchError as err:  # a failure the start would meet too
            return dict.fromkeys(refs, err)
        why = NotChecked(
            f"not unwrapped (a wrapped secret id unwraps once), no login, no read; {checked}"
        )
        return dict.fromkeys(refs, why)

    def abandon(self) -> None:
        """The start failed: the leases fetched will not be used, so end them.

        A login token is revoked by :meth:`close` even though leases depend on
        it: they end with it (the default policy lets a token revoke itself,
        not a lease). Leases fetched with a token given to secretinit are
        revoked one by one, where its policy allows.
        """
        self._abandoned = True
        if self._client is None:
            return
        if self.refreshing and self._book.carried:
            # A refresh failed: the files keep what the last runs held, and so does
            # the state; only what this run read anew goes.
            # Forgotten first: revoking takes each lease it ends out of the list.
            fetched = list(self.leases)
            self._book.forget_fetched()
            self._revoke_each(fetched)
            return
        if not self._login.logged_in:
            self._revoke_each(self.leases)

    def _revoke_each(self, leases: list[HeldLease]) -> None:
        """Revoke ``leases`` one by one, where the token's policy allows it."""
        self._session.deadline = time.monotonic() + REVOKE_TIMEOUT
        for lease in list(leases):
            try:
                self._client.sys.revoke_lease(lease.lease_id)
            except Exception as err:
                reason = self._login.scrub(str(vault_error(err, "revoking a lease", "Vault")))
                LOGGER.warning(
                    "vault: the lease of %s could not be revoked (%s); it expires with its TTL",
                    lease.path,
                    reason,
                    extra={"fields": {"event": "vault_lease_revoke_failed", "path": lease.path}},
                )
            else:
                leases.remove(lease)

    def close(self) -> None:
        """Revoke the token secretinit logged in for, unless a lease in use depends on it."""
        if self._client is None:
            return
        try:
            if self.refreshing and self._book.token and (self._book.carried or not self._abandoned):
                debug("vault: keeping the login token for the next refresh", "vault_token_kept")
            elif self._login.logged_in and self.leases and not self._abandoned:
                LOGGER.info(
                    "vault: keeping the login token: %d fetched secrets hold leases that "
                    "would end with it",
                    len(self.leases),
                    extra={"fields": {"event": "vault_token_kept", "leases": len(self.leases)}},
                )
            elif self._login.logged_in:
                self._session.deadline = time.monotonic() + REVOKE_TIMEOUT
                self._client.auth.token.revoke_self()
                self.leases.clear()  # they ended with the token
                debug(
                    "vault: revoked the login token (auth/token/revoke-self)", "vault_token_revoked"
                )
            elif self._client.token:
                debug(
                    "vault: the token was given to secretinit: not revoked",
                    "vault_token_not_revoked",
                )
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
        """The client, logged in (or given its token), until ``deadline``."""
        client = self._client_until(deadline)
        if not client.token:
            client.token = self._token(client)
        return client

    def _client_until(self, deadline: float) -> Any:
        """The client, made on first use, whose requests end by ``deadline``."""
        if self._client is None:
            self._client, self._session = make_client(self.settings)
        self._session.deadline = deadline
        return self._client

    def _token(self, client: Any) -> str:
        """The token of this run: kept from the last run of a series, or a login's."""
        if self.refreshing and self.settings.auth != "token":
            kept = self._book.kept_token(client)
            if kept is not None:
                return kept
        token = self._login.token(client)
        if self.refreshing and self._login.logged_in:
            self._book.hold_token(token, self._login.auth)
            if self.settings.single_use:
                LOGGER.info(
                    "vault: the wrapped secret id logs in once: the refreshes keep its login "
                    "token (a TTL of %d s now) and renew it for as long as Vault allows; after "
                    "that they fail as expired (with --on-change exit, status 77)",
                    int(self._login.auth.get("lease_duration") or 0),
                    extra={"fields": {"event": "vault_single_use_login"}},
                )
        return token

    # Across the runs of a refresh series (see secretinit_vault._leases).

    def restore_state(self, state: Mapping[str, Any]) -> None:
        self._book.restore(dict(state))

    def save_state(self) -> Mapping[str, Any]:
        return self._book.save()

    def refresh_within(self) -> float | None:
        return self._book.within()

    def release(self) -> None:
        """The command exited: revoke the kept login token (its leases end with it).

        With a token given to secretinit, each lease is revoked where its
        policy allows; the token itself is its owner's.
        """
        if not (self._book.token or self._book.held):
            return
        self._client_until(time.monotonic() + REVOKE_TIMEOUT)
        if self._book.token is None:
            if self.settings.auth != "token":
                return  # the leases ended with the token they were read with
            self._client.token = self._login.token(self._client)
        if self._book.token is None and self._book.token_life is None:
            # A token given to secretinit: lease by lease, where its policy allows.
            self._revoke_each(list(self._book.held.values()))
        try:
            self._book.release(self._client)
        except Exception as err:
            error = scrubbed(
                vault_error(err, "revoking the login token", "Vault"), self._login.scrub
            )
            LOGGER.warning(
                "vault: %s; the token and its leases end with their TTL",
                error,
                extra={"fields": {"event": "vault_revoke_failed"}},
            )

    def _read(
        self, client: Any, location: str, version: str | None, mount: Mount
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
                return field(field(response, "data", what), "data", what)
            if mount.kv_version is not None:
                response = client.secrets.kv.v1.read_secret(path, mount.path.rstrip("/"))
                return field(response, "data", what)
            response = client.read(quote(location))
        except Exception as err:
            error = vault_error(err, what, self.settings.address)
            if isinstance(error, NotFound) and path.startswith(("data/", "metadata/")):
                error = NotFound(f"{error} (KV version 2 paths are written without data/)")
            raise error from None
        if response is None:
            raise NotFound(f"{what} does not exist")
        data = field(response, "data", what)
        if response.get("lease_id"):
            self._book.record((location, version), response)
        return data

    def _run(self, work: Callable[[K], Any], items: Sequence[K], deadline: float) -> dict[K, Any]:
        """``work`` on each item, at most ``concurrency`` at once, until ``deadline``.

        A rejected token or a 429 stops further requests of the batch: the
        ones left get that answer (the core retries a 429 after its backoff).
        """
        cancel = Cancel()

        def failure(item: K, err: Exception) -> FetchError:
            error = self._failure(err, item)
            if isinstance(error, TokenRejected | Throttled):
                if isinstance(error, Throttled):
                    self._throttled = True
                cancel.set(error)
            return error

        return run_bounded(
            work,
            items,
            concurrency=self.settings.concurrency,
            deadline=deadline,
            on_error=failure,
            late=Unreachable(
                f"no answer from Vault at {self.settings.address} before the deadline"
            ),
            cancel=cancel,
            name="secretinit-vault",
        )

    def _failure(self, err: BaseException, item: object) -> FetchError:
        """``err`` as a FetchError about ``item``, scrubbed of any credential."""
        return scrubbed(vault_error(err, str(item), self.settings.address), self._login.scrub)


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
