"""Vault leases and the login token across the runs of a refresh series.

With ``--refresh`` each run is a new process (``secretinit._refresh``); what
one run holds for the next is this module's state, which the core keeps in
the secret directory's private ``..secretinit/`` (see ``secretinit._provider``):

- **A lease** (``database/creds/app``): the data read with it, its id and its
  lifetime. A run answers a read that holds a live lease with that data,
  without a request: the application keeps its credential and nothing
  changes. At about 2/3 of the lease's current duration (less up to 10 % of
  jitter, so that a fleet spreads out) a run renews it, asking for its first
  TTL again. A renewal that grants less than asked has reached the lease's
  max TTL, and a lease that is not renewable cannot be renewed at all: either
  is *replaced* at 2/3 of what it has left, by reading its path anew. That is
  a new credential, which the core writes and ``--on-change`` announces,
  while the old one still works for the rest of its time. A lease that Vault
  no longer knows (expired, revoked) is read anew at once.
- **The login token** secretinit logged in for (approle, kubernetes, jwt):
  kept rather than revoked at the end of each run (the leases end with it)
  and renewed the same way. When it can no longer be renewed, the next run
  logs in again if the login can be repeated, and reads every leased path
  anew under the new token, since the old token's leases end with it. A
  login that cannot be repeated (a response-wrapped secret id unwraps once)
  keeps its token to the end; after that every reference of the run is
  :class:`~secretinit.Expired`, which says why.
- A token given to secretinit (``VAULT_TOKEN``, a token file) is its
  owner's: neither renewed nor revoked here (a token file is read again by
  each run, so a rotated file is picked up).

The provider's ``refresh_within`` reports the soonest of these actions, so the
supervisor starts the next run in time whatever the period.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Any

import hvac.exceptions  # type: ignore[import-untyped]

from secretinit import Expired
from secretinit_vault._client import vault_error
from secretinit_vault._log import LOGGER, debug
from secretinit_vault._settings import VaultSettings

STATE_VERSION = 1
RENEW_FRACTION = 2 / 3  # act at this fraction of the current duration...
JITTER = 0.1  # ...less up to this share of it
# A lease or token closer than this to its end is treated as gone: a request
# made with it could arrive after it ended.
EXPIRY_MARGIN = 1.0

# A read: the location and the KV v2 version (None: the latest).
Read = tuple[str, str | None]


@dataclass
class Lifetime:
    """How long a lease or a token lives, and when to act on it (``time.time()`` seconds).

    ``duration`` 0 means no end (a token without a TTL).
    """

    granted: float  # when the current duration was granted
    duration: float
    increment: int  # asked at each renewal: the first duration granted
    renewable: bool
    capped: bool  # a renewal granted less than asked: the max TTL is near
    act_at: float  # renew then, or replace when it cannot be renewed

    @classmethod
    def starting(cls, duration: float, renewable: bool, now: float) -> Lifetime:
        """A lifetime granted now."""
        return cls(now, duration, int(duration), renewable, False, _act_time(now, duration))

    @property
    def expires(self) -> float:
        return self.granted + self.duration if self.duration else math.inf

    @property
    def renews(self) -> bool:
        """Whether acting on it means renewing it (else: replacing it)."""
        return self.renewable and not self.capped

    def renewed(self, duration: float, renewable: bool, now: float) -> Lifetime:
        """After a renewal that granted ``duration``."""
        capped = self.capped or duration < self.increment
        return Lifetime(now, duration, self.increment, renewable, capped, _act_time(now, duration))

    def to_json(self) -> dict[str, Any]:
        return {
            "granted": self.granted,
            "duration": self.duration,
            "increment": self.increment,
            "renewable": self.renewable,
            "capped": self.capped,
            "act_at": self.act_at if math.isfinite(self.act_at) else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Lifetime:
        act_at = data["act_at"]
        return cls(
            float(data["granted"]),
            float(data["duration"]),
            int(data["increment"]),
            bool(data["renewable"]),
            bool(data["capped"]),
            math.inf if act_at is None else float(act_at),
        )


def _act_time(now: float, duration: float) -> float:
    if not duration:
        return math.inf
    fraction = RENEW_FRACTION * (1.0 - JITTER * random.random())  # noqa: S311 - jitter
    return now + duration * fraction


@dataclass
class HeldLease:
    """A lease a read returned, with the data it answers that read with."""

    path: str
    version: str | None
    lease_id: str
    data: dict[str, Any]
    life: Lifetime

    @property
    def duration(self) -> int:
        """The duration first granted, in seconds."""
        return self.life.increment

    @property
    def renewable(self) -> bool:
        return self.life.renewable

    @property
    def read(self) -> Read:
        return (self.path, self.version)

    def __repr__(self) -> str:
        return f"HeldLease(path={self.path!r}, duration={self.duration})"  # never the data


class LeaseBook:
    """The leases and the login token of this run, and those kept from the last one."""

    def __init__(self, settings: VaultSettings) -> None:
        self.settings = settings
        self.held: dict[Read, HeldLease] = {}  # what the next run gets, read by read
        self.fetched: list[HeldLease] = []  # read anew in this run
        self.replaced: dict[Read, HeldLease] = {}  # held before this run read them anew
        self.token: str | None = None  # the login token secretinit holds (not a given one)
        self.token_life: Lifetime | None = None
        self.carried = False  # the token or leases came from a previous run
        self.expired: str | None = None  # why no refresh can read Vault any more

    # Between runs.

    def restore(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`save` returned in the previous run, if it is for this Vault."""
        if not state:
            return
        if state.get("version") != STATE_VERSION or state.get("vault") != self._identity():
            debug("vault: the kept state is for another Vault or login: not used", "vault_state")
            return
        now = time.time()
        self.expired = state.get("expired")
        try:
            if state.get("token"):
                self.token = str(state["token"])
                self.token_life = Lifetime.from_json(state["token_life"])
            for entry in state.get("leases", []):
                lease = HeldLease(
                    str(entry["path"]),
                    entry["version"],
                    str(entry["lease_id"]),
                    dict(entry["data"]),
                    Lifetime.from_json(entry["life"]),
                )
                if lease.life.expires > now:
                    self.held[lease.read] = lease
        except (KeyError, TypeError, ValueError) as err:
            LOGGER.warning(
                "vault: the kept leases are unreadable (%s): reading anew",
                type(err).__name__,
                extra={"fields": {"event": "vault_state_lost"}},
            )
            self.token, self.token_life, self.held = None, None, {}
        self.carried = bool(self.token or self.held)

    def save(self) -> dict[str, Any]:
        """What the next run needs: the login token and the live leases."""
        now = time.time()
        leases = [
            {
                "path": lease.path,
                "version": lease.version,
                "lease_id": lease.lease_id,
                "data": lease.data,
                "life": lease.life.to_json(),
            }
            for lease in self.held.values()
            if lease.life.expires > now
        ]
        state: dict[str, Any] = {"version": STATE_VERSION, "vault": self._identity()}
        if self.token is not None and self.token_life is not None:
            state["token"] = self.token
            state["token_life"] = self.token_life.to_json()
        if leases:
            state["leases"] = leases
        if self.expired is not None:
            state["expired"] = self.expired
        return state if len(state) > 2 else {}

    def within(self) -> float | None:
        """Seconds until the soonest renewal or replacement, or None when none is due."""
        times = [lease.life.act_at for lease in self.held.values()]
        if self.token_life is not None:
            times.append(self.token_life.act_at)
        soonest = min(times, default=math.inf)
        return None if soonest == math.inf else max(0.0, soonest - time.time())

    def _identity(self) -> str:
        settings = self.settings
        login = f"{settings.auth}|{settings.auth_mount}"
        return f"{settings.address}|{settings.namespace or ''}|{login}"

    # The login token.

    def kept_token(self, client: Any) -> str | None:
        """The kept login token, renewed when due; None when a new login is needed.

        Raises :class:`Expired` when the token is gone and the login cannot be
        repeated, and the FetchError of a renewal that failed for a while
        (Vault unreachable): the core retries it.
        """
        if self.expired is not None:
            raise Expired(self.expired)
        if self.token is None or self.token_life is None:
            return None
        life, now = self.token_life, time.time()
        if now >= life.expires - EXPIRY_MARGIN:
            self._token_gone("expired")
            return None
        if now < life.act_at:
            return self.token
        if not life.renews:
            if self.settings.single_use:  # nothing better to come: keep it to its end
                self.token_life.act_at = life.expires
                return self.token
            debug(
                "vault: the login token cannot be renewed further "
                f"({life.expires - now:.0f} s left): logging in again",
                "vault_token_retired",
            )
            self._drop_token()
            return None
        client.token = self.token
        try:
            response = client.auth.token.renew_self(increment=life.increment)
        except hvac.exceptions.Forbidden:
            self._token_gone("been revoked")
            return None
        except Exception as err:
            raise vault_error(err, "renewing the login token", self.settings.address) from None
        auth = response.get("auth") or {}
        self.token_life = life.renewed(
            float(auth.get("lease_duration") or 0), bool(auth.get("renewable")), now
        )
        if self.settings.single_use and self.token_life.capped:
            self.token_life.act_at = self.token_life.expires
        debug(
            f"vault: renewed the login token: {self.token_life.duration:.0f} s"
            + (" (its max TTL)" if self.token_life.capped else ""),
            "vault_token_renewed",
            ttl=self.token_life.duration,
        )
        return self.token

    def hold_token(self, token: str, auth: dict[str, Any]) -> None:
        """Keep the token a login just returned (``auth``: the login's ``auth`` object)."""
        self.token = token
        duration = float(auth.get("lease_duration") or 0)
        self.token_life = Lifetime.starting(duration, bool(auth.get("renewable")), time.time())
        if self.settings.single_use and not self.token_life.renews:
            self.token_life.act_at = self.token_life.expires

    def _token_gone(self, how: str) -> None:
        if self.settings.single_use:
            # Said by every later run too, without trying: nothing can change it.
            self.expired = (
                f"the Vault login token kept since the start has {how}, and the wrapped "
                f"secret id in {self.settings.secret_id_file} logs in only once (the start "
                "used it): no refresh can read Vault any more; start again with a new "
                "wrapped secret id"
            )
            self._drop_token()
            raise Expired(self.expired)
        debug(f"vault: the kept login token has {how}: logging in again", "vault_token_gone")
        self._drop_token()

    def _drop_token(self) -> None:
        self.token, self.token_life = None, None
        # Its leases ended, or will end, with it: each is read anew under the next token.
        for read, lease in self.held.items():
            self.replaced.setdefault(read, lease)
        self.held = {}

    # Leases.

    def answer(self, read: Read) -> HeldLease | None:
        """The lease that may still answer ``read`` (renewed first when due), or None.

        None means: read it anew (no lease held, or it is at its end).
        """
        lease = self.held.get(read)
        if lease is None:
            return None
        now = time.time()
        ending = now >= lease.life.expires - EXPIRY_MARGIN
        if ending or (now >= lease.life.act_at and not lease.life.renews):
            why = "is at its end" if ending else "cannot be renewed further"
            debug(
                f"vault: the lease of {lease.path} {why} "
                f"({max(0.0, lease.life.expires - now):.1f} s left): reading it anew",
                "vault_lease_replaced",
                path=lease.path,
            )
            return None
        return lease

    def due(self, lease: HeldLease) -> bool:
        """Whether ``lease`` is to be renewed in this run."""
        return time.time() >= lease.life.act_at

    def renew(self, client: Any, lease: HeldLease) -> HeldLease | None:
        """Renew ``lease``; None when Vault refuses (read its path anew).

        Raises the FetchError of a transient failure (the core retries it).
        """
        now = time.time()
        try:
            response = client.sys.renew_lease(lease.lease_id, increment=lease.life.increment)
        except Exception as err:
            error = vault_error(err, f"renewing the lease of {lease.path}", self.settings.address)
            if error.transient:
                raise error from None
            debug(f"vault: {error}: reading it anew", "vault_lease_lost", path=lease.path)
            return None
        duration = float(response.get("lease_duration") or 0)
        lease.life = lease.life.renewed(duration, bool(response.get("renewable")), now)
        debug(
            f"vault: renewed the lease of {lease.path}: {duration:.0f} s"
            + (" (its max TTL: replaced before it ends)" if lease.life.capped else ""),
            "vault_lease_renewed",
            path=lease.path,
            ttl=duration,
        )
        return lease

    def record(self, read: Read, response: dict[str, Any]) -> HeldLease:
        """A read returned a lease: hold it, with its data, for the next runs."""
        lease = HeldLease(
            read[0],
            read[1],
            str(response["lease_id"]),
            dict(response.get("data") or {}),
            Lifetime.starting(
                float(response.get("lease_duration") or 0),
                bool(response.get("renewable")),
                time.time(),
            ),
        )
        previous = self.held.get(read)
        if previous is not None and read not in self.replaced:
            self.replaced[read] = previous
        self.held[read] = lease
        self.fetched.append(lease)
        debug(
            f"vault: {lease.path} holds a lease of {lease.duration} s "
            f"(renewable: {lease.renewable})",
            "vault_lease",
            path=lease.path,
            ttl=lease.duration,
        )
        return lease

    def forget_fetched(self) -> None:
        """This run's new leases will not be used: the next run holds the previous ones."""
        for lease in self.fetched:
            if self.held.get(lease.read) is lease:
                del self.held[lease.read]
        self.held.update(self.replaced)
        self.replaced.clear()
        self.fetched.clear()

    # The end.

    def release(self, client: Any) -> None:
        """End the login token, and with it its leases; then hold nothing.

        Leases read with a token given to secretinit are the provider's to
        revoke one by one (VaultProvider.release) before this.
        """
        if self.token_life is not None and time.time() >= self.token_life.expires:
            self.token = None  # it ended, and its leases with it
        if self.token is not None:
            client.token = self.token
            client.auth.token.revoke_self()
            debug(
                f"vault: revoked the login token and its {len(self.held)} leases",
                "vault_released",
            )
        self.token, self.token_life, self.held = None, None, {}
