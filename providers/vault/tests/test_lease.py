"""A renewable lease: database credentials from OpenBao's Redis plugin against a RESP fake."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

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
