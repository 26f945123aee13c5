"""A renewable lease: database credentials from OpenBao's Redis plugin against a RESP fake."""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any

import pytest

from secretinit import SecretRef

from .conftest import RespFake, approle_files, secret_id


def test_dynamic_credentials_keep_their_login_token(
    bao: Any, approle: str, redis_fake: RespFake, home: Path
) -> None:
    options = approle_files(home, approle, secret_id(bao))
    refs = [
        SecretRef("vault", "database/creds/app", "username"),
        SecretRef("vault", "database/creds/app", "password"),
        SecretRef("vault", "database/creds/app"),
    ]
    provider = bao.provider(bao.environ(home), options)
    before = bao.accessors()
    result = provider.fetch(refs, 20.0)
    login_token = bao.accessors() - before
    provider.close()

    # Every read of creds/ makes a new user: one read serves the three references.
    username, password, whole = (result[ref] for ref in refs)
    assert isinstance(whole, bytes)
    assert json.loads(whole) == {"username": username.decode(), "password": password.decode()}
    assert redis_fake.users(b"SETUSER").count(username.decode()) == 1

    [lease] = provider.leases
    assert lease.path == "database/creds/app"
    assert lease.renewable
    assert lease.duration == 3600

    # Revoking the login token would revoke the lease and delete the user: it is kept.
    assert len(login_token) == 1
    assert login_token <= bao.accessors()
    assert username.decode() not in redis_fake.users(b"DELUSER")

    renewed = bao.api("POST", "sys/leases/renew", {"lease_id": lease.lease_id})
    assert renewed["renewable"] is True

    bao.api("POST", "sys/leases/revoke", {"lease_id": lease.lease_id})
    deadline = time.monotonic() + 10
    while username.decode() not in redis_fake.users(b"DELUSER"):
        assert time.monotonic() < deadline, "revoking the lease did not delete the user"
        time.sleep(0.05)


def test_a_failed_start_revokes_its_dynamic_credentials(
    bao: Any, approle: str, redis_fake: RespFake, home: Path
) -> None:
    options = approle_files(home, approle, secret_id(bao))
    ref = SecretRef("vault", "database/creds/app", "username")
    provider = bao.provider(bao.environ(home), options)
    before = bao.accessors()
    username = provider.fetch([ref], 20.0)[ref]
    assert isinstance(username, bytes)
    login_token = bao.accessors() - before
    assert len(login_token) == 1

    provider.abandon()  # what the core calls when another secret failed
    provider.close()

    assert provider.leases == []
    assert not login_token & bao.accessors()  # the login token is revoked too
    deadline = time.monotonic() + 10
    while username.decode() not in redis_fake.users(b"DELUSER"):
        assert time.monotonic() < deadline, "abandoning did not revoke the lease"
        time.sleep(0.05)


def series_run(
    bao: Any, environ: dict[str, str], options: dict[str, Any], state: dict[str, Any]
) -> Any:
    """A provider for one run of a refresh series, restored from the last run's ``state``."""
    provider = bao.provider(environ, options)
    provider.refreshing = True
    provider.restore_state(state)
    return provider


def test_a_refresh_answers_from_the_kept_lease_and_a_failed_one_keeps_it(
    bao: Any, approle: str, redis_fake: RespFake, home: Path
) -> None:
    """Runs of a series in one process: the state one run saves is what the next restores."""
    options = approle_files(home, approle, secret_id(bao))
    ref = SecretRef("vault", "database/creds/app", "username")
    environ = bao.environ(home)
    run = functools.partial(series_run, bao, environ, options)

    start = run({})
    first = start.fetch([ref], 20.0)[ref]
    state = json.loads(json.dumps(start.save_state()))  # as the core keeps it: JSON
    within = start.refresh_within()
    start.close()
    assert isinstance(first, bytes)
    # The sooner of the lease's renewal (1 h TTL) and the login token's (10 min): about
    # 2/3 of 10 min, less up to 10 % of jitter.
    assert within is not None and 600 * 0.6 - 5 < within <= 600 * 2 / 3
    assert state["token"] and state["leases"][0]["data"]["username"] == first.decode()
    # Kept, not revoked: the next run reads with it.
    assert bao.api("POST", "auth/token/lookup", {"token": state["token"]})["data"]["ttl"] > 0

    # A refresh with nothing due: the kept credential, no read, no login.
    reads = bao.audited_requests("database/creds/app")
    logins = bao.audited_requests("auth/approle/login")
    again = run(state)
    assert again.fetch([ref], 20.0)[ref] == first
    again.close()
    assert bao.audited_requests("database/creds/app") == reads
    assert bao.audited_requests("auth/approle/login") == logins

    # At its max TTL the lease is read anew; if that run then fails, the next one
    # still holds the old lease (the files still hold its credential).
    state["leases"][0]["life"].update(capped=True, act_at=time.time() - 1)
    failing = run(state)
    second = failing.fetch([ref], 20.0)[ref]
    assert isinstance(second, bytes) and second != first
    assert bao.audited_requests("database/creds/app") == reads + 1
    failing.abandon()  # what the core calls when another secret failed
    kept = failing.save_state()
    failing.close()
    assert kept["leases"][0]["lease_id"] == state["leases"][0]["lease_id"]
    assert kept["token"] == state["token"]  # still the series' token


def test_a_failed_refresh_revokes_a_lease_read_anew_and_does_not_keep_it(
    bao: Any, approle: str, redis_fake: RespFake, home: Path
) -> None:
    """A lease read where none was held, in a run that then fails, is revoked and forgotten."""
    bao.api(
        "PUT",
        "sys/policies/acl/revoker",
        {"policy": 'path "sys/leases/revoke" { capabilities = ["update"] }'},
    )
    role = "auth/approle/role/revoker"
    bao.api("POST", role, {"token_policies": ["reader", "revoker"], "token_ttl": "10m"})
    role_id = str(bao.api("GET", f"{role}/role-id")["data"]["role_id"])
    options = approle_files(
        home, role_id, str(bao.api("POST", f"{role}/secret-id")["data"]["secret_id"])
    )
    ref = SecretRef("vault", "database/creds/app", "username")
    environ = bao.environ(home)
    run = functools.partial(series_run, bao, environ, options)

    start = run({})
    assert isinstance(start.fetch([ref], 20.0)[ref], bytes)
    state = json.loads(json.dumps(start.save_state()))
    start.close()

    failing = run({**state, "leases": []})  # the series' token, no lease for this read yet
    fresh = failing.fetch([ref], 20.0)[ref]
    assert isinstance(fresh, bytes)
    failing.abandon()  # what the core calls when another secret failed
    assert failing.save_state().get("leases", []) == []
    failing.close()
    deadline = time.monotonic() + 10
    while fresh.decode() not in redis_fake.users(b"DELUSER"):
        assert time.monotonic() < deadline, "abandoning did not revoke the fresh lease"
        time.sleep(0.05)


def test_a_single_use_login_that_expired_is_said_again_without_a_request(home: Path) -> None:
    """Once the token of a wrapped secret id is gone, every later run says so at once."""
    from secretinit_vault import VaultProvider
    from secretinit_vault._leases import LeaseBook

    from secretinit import Expired

    options = {
        "auth": "approle",
        "role_id": "role",
        "secret_id_file": str(home / "wrapped"),
        "secret_id_wrapped": True,
    }
    settings = VaultProvider("vault", options, {"VAULT_ADDR": "http://127.0.0.1:9"}).settings
    book = LeaseBook(settings)
    book.hold_token("a-token-canary-7c1d", {"lease_duration": 1, "renewable": False})
    with pytest.raises(Expired, match="logs in only once"):
        book.kept_token(client=None)  # within a second of its end: gone
    state = json.loads(json.dumps(book.save()))
    assert "token" not in state and "a-token-canary-7c1d" not in json.dumps(state)
    later = LeaseBook(settings)
    later.restore(state)
    with pytest.raises(Expired, match=str(home / "wrapped")):
        later.kept_token(client=None)  # no client: no request could have been made
    assert later.within() is None  # nothing to renew: the supervisor backs off
