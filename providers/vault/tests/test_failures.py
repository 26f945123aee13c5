"""Failing well: sealed, stopped and silent servers are transient; the deadline holds."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

from secretinit_vault import VaultProvider

from conftest import assert_no_leak, run_secretinit
from secretinit import AccessDenied, FetchError, SecretRef, Unreachable

from .conftest import start_server, unique

REF = SecretRef("vault", "secret/app/db", "password")


def environ(server: Any, home: Path) -> dict[str, str]:
    return {"VAULT_ADDR": server.address, "VAULT_TOKEN": server.root_token, "HOME": str(home)}


def test_sealed_server_is_transient(tmp_path: Path, home: Path) -> None:
    server = start_server(tmp_path / "sealed")
    try:
        server.api("POST", "secret/data/app/db", {"data": {"password": "sealed-pw"}})
        server.bao("operator", "seal")
        provider = VaultProvider("vault", {}, environ(server, home))
        try:
            error = provider.fetch([REF], 10.0)[REF]
        finally:
            provider.close()
        assert isinstance(error, Unreachable), error
        assert error.transient
        assert "sealed" in str(error)
    finally:
        server.kill()


def test_secretinit_waits_for_an_unseal(tmp_path: Path, home: Path) -> None:
    """``secretinit fetch`` retries a sealed Vault until it is unsealed, within --timeout."""
    server = start_server(tmp_path / "unseal")
    try:
        server.api("POST", "secret/data/app/db", {"data": {"password": "after-unseal"}})
        key = server.unseal_key()
        server.bao("operator", "seal")

        def unseal_later() -> None:
            time.sleep(1.5)
            server.api("POST", "sys/unseal", {"key": key})

        unsealer = threading.Thread(target=unseal_later)
        unsealer.start()
        out = tmp_path / "out"
        env = {**environ(server, home), "DB_PASSWORD": "vault://secret/app/db#password"}
        started = time.monotonic()
        result = run_secretinit(["fetch", "--dir", str(out), "--timeout", "20"], env)
        unsealer.join()
        assert result.returncode == 0, result.stderr
        assert 1.4 < time.monotonic() - started < 20
        assert (out / "DB_PASSWORD").read_bytes() == b"after-unseal"
        assert_no_leak(["after-unseal", server.root_token], result.stdout, result.stderr)
    finally:
        server.kill()


def test_stopped_server(tmp_path: Path, home: Path) -> None:
    server = start_server(tmp_path / "stopped")
    server.stop()
    provider = VaultProvider("vault", {}, environ(server, home))
    try:
        error = provider.fetch([REF], 5.0)[REF]
    finally:
        provider.close()
    assert isinstance(error, Unreachable), error
    assert "Connection refused" in str(error)
    assert server.root_token not in str(error)

    # Through the core: retried with backoff, then one report, exit 69, within the timeout.
    env = {**environ(server, home), "DB_PASSWORD": "vault://secret/app/db#password"}
    started = time.monotonic()
    result = run_secretinit(["fetch", "--dir", str(tmp_path / "out"), "--timeout", "2"], env)
    assert result.returncode == 69, result.stderr
    assert time.monotonic() - started < 10
    assert "DB_PASSWORD (vault://secret/app/db#password" in result.stderr
    assert "gave up after" in result.stderr
    assert_no_leak([server.root_token], result.stdout, result.stderr)


def test_silent_server_cannot_outlast_the_deadline(home: Path) -> None:
    with socket.socket() as silent:  # accepts connections (the backlog does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        env = {
            "VAULT_ADDR": f"http://127.0.0.1:{silent.getsockname()[1]}",
            "VAULT_TOKEN": "t",
            "HOME": str(home),
        }
        provider = VaultProvider("vault", {}, env)
        started = time.monotonic()
        try:
            error = provider.fetch([REF], 1.0)[REF]
        finally:
            provider.close()
        assert time.monotonic() - started < 3
        assert isinstance(error, Unreachable), error


def test_policy_denies_one_path_of_a_batch(bao: Any, reader: str, home: Path) -> None:
    allowed, denied = unique("secret/allowed"), unique("secret/denied/db")
    bao.put(allowed, {"password": "allowed-pw"})
    bao.put(denied, {"password": "denied-pw"})
    refs = [SecretRef("vault", allowed, "password"), SecretRef("vault", denied, "password")]
    provider = bao.provider(bao.environ(home, reader))
    try:
        result = provider.fetch(refs, 10.0)
    finally:
        provider.close()
    assert result[refs[0]] == b"allowed-pw"
    error = result[refs[1]]
    assert isinstance(error, AccessDenied), error
    assert "permission denied by policy" in str(error)
    assert denied in str(error)
    assert_no_leak(["denied-pw", reader], str(error))


def test_rejected_token_costs_one_request(bao: Any, home: Path) -> None:
    folder = unique("secret/rejected")
    refs = [SecretRef("vault", f"{folder}/s{i}", "value") for i in range(5)]
    provider = bao.provider(bao.environ(home, "hvs.not-a-token"))
    try:
        result = provider.fetch(refs, 10.0)
    finally:
        provider.close()
    assert all(isinstance(result[ref], AccessDenied) for ref in refs)
    asked = sum(bao.audited_requests(f"sys/internal/ui/mounts/{ref.location}") for ref in refs)
    read = sum(bao.audited_requests(f"secret/data/{ref.location[7:]}") for ref in refs)
    assert (asked, read) == (1, 0)


def test_https_address_of_a_plain_http_server_fails_at_once_with_a_hint(
    bao: Any, tmp_path: Path, home: Path
) -> None:
    address = bao.address.replace("http://", "https://")
    env = {"VAULT_ADDR": address, "VAULT_TOKEN": "t", "HOME": str(home), "A": "vault://secret/a#k"}
    started = time.monotonic()
    result = run_secretinit(["fetch", "--dir", str(tmp_path / "o"), "--timeout", "30"], env)
    assert result.returncode == 69, result.stderr
    assert time.monotonic() - started < 15  # not retried until the 30 s deadline
    assert f"{address} answered in plain HTTP, not TLS: if Vault serves HTTP there, write " in (
        result.stderr
    )
    assert "gave up after" not in result.stderr


def test_http_address_of_an_https_server_fails_at_once_with_a_hint(
    tmp_path: Path, home: Path
) -> None:
    server = start_server(tmp_path / "tls", tls=True)
    try:
        address = server.address.replace("https://", "http://")
        provider = VaultProvider("vault", {}, {**environ(server, home), "VAULT_ADDR": address})
        try:
            error = provider.fetch([REF], 20.0)[REF]
        finally:
            provider.close()
        assert isinstance(error, FetchError), error
        assert not error.transient
        assert f"{address} serves HTTPS, but VAULT_ADDR says http://: write https://" in str(error)
    finally:
        server.kill()
