"""``--refresh`` against OpenBao: a KV v2 secret updated between two refreshes; the server
stopped during a refresh (the old files stay; the refreshes recover when it is back); a
dynamic secret's lease renewed, then replaced at its max TTL; the login token kept between
runs and revoked at the end; a wrapped secret id that cannot log in again; what a refresh
costs in requests."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from secretinit_vault.testing import DevServer, database_role

from conftest import assert_no_leak, secretinit_executable
from tests.refreshing import LogFile, files_line, refreshing

from .conftest import RespFake, approle_files, secret_id, start_server, unique, vault_config


def put(server: DevServer, path: str, data: dict[str, str]) -> None:
    server.api("POST", f"secret/data/{path}", {"data": data})


def status(directory: Path, max_age: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [secretinit_executable(), "status", "--dir", str(directory), "--max-age", max_age],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_kv_updates_reach_the_application_and_an_outage_keeps_the_last_files(
    tmp_path: Path, home: Path, secrets_dir: Path, refresh_log: LogFile
) -> None:
    values = ["bao-canary-v1-7a1c", "bao-canary-v2-8b2d", "bao-canary-v3-9c3e"]
    server = start_server(tmp_path / "bao")  # its own: this test stops it
    try:
        put(server, "app/db", {"password": values[0], "user": "app"})
        env = {
            "VAULT_ADDR": server.address,
            "VAULT_TOKEN": server.root_token,
            "HOME": str(home),
            "DB_PASSWORD": "vault://secret/app/db#password",
        }
        options = ["--dir", str(secrets_dir), "--refresh", "1", "--timeout", "2s"]
        running = refreshing(
            [*options, "--on-change", "signal:HUP"], env, ["DB_PASSWORD"], refresh_log
        )
        try:
            assert running.expect("files") == files_line(DB_PASSWORD=values[0])
            put(server, "app/db", {"password": values[1], "user": "app"})  # KV v2 version 2
            assert running.expect("SIGHUP") == "SIGHUP"
            assert running.expect("files") == files_line(DB_PASSWORD=values[1])

            # The server goes away while a refresh starts: it fails after its
            # --timeout of retries, and the next ones too, keeping the files.
            refresh_log.wait_for('"event": "refresh_started"')
            port, token = server.port, server.root_token
            server.stop()
            failed = json.loads(refresh_log.wait_for('"event": "refresh_failed"'))
            assert failed["status"] == 69
            assert "unreachable" in refresh_log.text()
            assert (secrets_dir / "DB_PASSWORD").read_text() == values[1]
            health = status(secrets_dir, "1h")
            assert health.returncode == 0 and "failed since: DB_PASSWORD" in health.stdout

            # Back (a dev server keeps nothing: same port, same token, the secret anew).
            server = DevServer(tmp_path / "bao", pick_port=lambda: port)
            server.root_token = token
            server.start()
            put(server, "app/db", {"password": values[2], "user": "app"})
            assert running.expect("SIGHUP", timeout=40) == "SIGHUP"
            assert running.expect("files") == files_line(DB_PASSWORD=values[2])
            assert status(secrets_dir, "10s").stdout.startswith("ready: last success")
            running.send(signal.SIGTERM)
            exit_status, _, _ = running.wait()
        finally:
            running.kill()
    finally:
        server.stop()
    assert exit_status == 0
    assert_no_leak([*values, token], refresh_log.text(), "\n".join(running.lines))


def role(bao: Any, name: str, **settings: Any) -> str:
    """An AppRole role with the reader policy and ``settings``; its role id."""
    bao.api("POST", f"auth/approle/role/{name}", {"token_policies": ["reader"], **settings})
    return str(bao.api("GET", f"auth/approle/role/{name}/role-id")["data"]["role_id"])


def new_secret_id(bao: Any, name: str, wrap_ttl: str | None = None) -> str:
    path = f"auth/approle/role/{name}/secret-id"
    if wrap_ttl is None:
        return str(bao.api("POST", path)["data"]["secret_id"])
    return str(bao.api("POST", path, headers={"X-Vault-Wrap-TTL": wrap_ttl})["wrap_info"]["token"])


def kept_state(secrets_dir: Path) -> dict[str, Any]:
    state: dict[str, Any] = json.loads(
        (secrets_dir / "..secretinit" / "providers.json").read_text()
    )
    return state["vault"]


def events(log: LogFile, name: str) -> list[dict[str, Any]]:
    return [
        record
        for line in log.text().splitlines()
        if line.startswith("{") and (record := json.loads(line)).get("event") == name
    ]


def test_a_lease_is_renewed_then_replaced_at_its_max_ttl_and_revoked_at_the_end(
    bao: Any,
    approle: str,
    redis_fake: RespFake,
    home: Path,
    secrets_dir: Path,
    refresh_log: LogFile,
) -> None:
    # Leases of 6 s, renewed at about 4 s, for 15 s at most: renewed twice, then replaced.
    name = unique("short")
    database_role(bao.api, name, "6s/15s")
    config = vault_config(home / "secretinit.toml", approle_files(home, approle, secret_id(bao)))
    env = {
        "VAULT_ADDR": bao.address,
        "HOME": str(home),
        "DB_USER": f"vault://database/creds/{name}#username",
        "DB_PASSWORD": f"vault://database/creds/{name}#password",
    }
    before = bao.accessors()
    # A period of a minute: every refresh here is one the lease asked for.
    options = ["--config", str(config), "--dir", str(secrets_dir), "--refresh", "60"]
    running = refreshing(
        [*options, "--on-change", "signal:HUP"], env, ["DB_USER", "DB_PASSWORD"], refresh_log
    )
    try:
        first = running.expect("files")
        [user] = redis_fake.users(b"SETUSER")[-1:]
        assert (secrets_dir / "DB_USER").read_text() == user
        state = kept_state(secrets_dir)
        [token] = [state["token"]]
        [lease] = state["leases"]
        assert lease["life"]["increment"] == 6 and lease["life"]["renewable"]
        # Renewed: the same credential, so nothing written and no signal.
        renewals = [json.loads(refresh_log.wait_for('"event": "vault_lease_renewed"', 30))]
        renewals.append(json.loads(refresh_log.wait_for('"event": "vault_lease_renewed"', 30)))
        assert renewals[0]["ttl"] == 6  # the first TTL asked again, and granted
        assert (secrets_dir / "DB_USER").read_text() == user
        assert user not in redis_fake.users(b"DELUSER")
        # At its max TTL the lease is replaced: a new user, the files, a SIGHUP.
        assert running.expect("SIGHUP", timeout=30) == "SIGHUP"
        second = running.expect("files")
        assert second != first
        new_user = (secrets_dir / "DB_USER").read_text()
        assert new_user != user and redis_fake.users(b"SETUSER").count(new_user) == 1
        # Replaced because its renewals reached the max TTL (then it cannot be renewed
        # further, or, if the run came late, it is at its end: read anew either way).
        [replaced] = events(refresh_log, "vault_lease_replaced")
        last_renewal = events(refresh_log, "vault_lease_renewed")[-1]
        assert "its max TTL" in last_renewal["message"], refresh_log.text()
        assert last_renewal["time"] < replaced["time"]
        assert sorted(events(refresh_log, "refresh_changed")[0]["changed"]) == [
            "DB_PASSWORD",
            "DB_USER",
        ]
        # One login for the whole series: the token lived on from run to run.
        assert bao.accessors() - before == {
            bao.api("POST", "auth/token/lookup", {"token": token})["data"]["accessor"]
        }
        assert kept_state(secrets_dir)["token"] == token
        exposed = [
            Path(f"/proc/{running.pid}/cmdline").read_bytes(),
            Path(f"/proc/{running.pid}/environ").read_bytes(),
        ]
        running.send(signal.SIGTERM)
        exit_status, _, _ = running.wait()
    finally:
        running.kill()
    assert exit_status == 0
    # The command exited: the last run revoked the login token, and its leases with it.
    assert not (bao.accessors() - before)
    deadline = time.monotonic() + 10
    while new_user not in redis_fake.users(b"DELUSER"):
        assert time.monotonic() < deadline, "the lease was not revoked at the end"
        time.sleep(0.05)
    values = [user, new_user, (secrets_dir / "DB_PASSWORD").read_text(), token]
    assert_no_leak(values, refresh_log.text(), "\n".join(running.lines), *exposed)


def test_a_wrapped_secret_id_that_cannot_log_in_again_expires_clearly(
    bao: Any, approle: str, home: Path, secrets_dir: Path, refresh_log: LogFile
) -> None:
    name = unique("once")
    role_id = role(bao, name, token_ttl="6s", token_max_ttl="13s")
    wrapping = new_secret_id(bao, name, wrap_ttl="60s")
    options = {**approle_files(home, role_id, wrapping), "secret_id_wrapped": True}
    config = vault_config(home / "secretinit.toml", options)
    bao.put("secret/app/once", {"password": "bao-canary-once-5e6f"})
    env = {"VAULT_ADDR": bao.address, "HOME": str(home), "PW": "vault://secret/app/once#password"}
    running = refreshing(
        [
            "--config",
            str(config),
            "--dir",
            str(secrets_dir),
            "--refresh",
            "60",
            "--on-change",
            "exit",
        ],
        env,
        ["PW"],
        refresh_log,
    )
    try:
        running.expect("files")
        said = events(refresh_log, "vault_single_use_login")
        assert said and "logs in once" in said[0]["message"]
        # Renewed while Vault allows (6 s at a time, 13 s at most), then expired: exit 77.
        refresh_log.wait_for('"event": "vault_token_renewed"', 30)
        expired = json.loads(refresh_log.wait_for('"event": "credential_expired"', 30))
        assert expired["status"] == 77
        exit_status, _, _ = running.wait()
    finally:
        running.kill()
    assert exit_status == 77
    text = refresh_log.text()
    assert f"the wrapped secret id in {home / 'vault_secret_id'} logs in only once" in text
    assert (secrets_dir / "PW").read_text() == "bao-canary-once-5e6f"  # the last files stay
    assert_no_leak(["bao-canary-once-5e6f", wrapping], text, "\n".join(running.lines))


LOGIN_PATH = "auth/approle/login"


def test_a_refresh_costs_no_more_requests_than_the_start(
    bao: Any,
    approle: str,
    redis_fake: RespFake,
    home: Path,
    secrets_dir: Path,
    refresh_log: LogFile,
) -> None:
    """N KV secrets and a lease: the start logs in, finds 2 mounts and reads N + 1 paths; a
    refresh with nothing due reads the N KV paths again (finding their mount), and nothing else:
    the token and the lease's data are kept."""
    n = 5
    prefix = unique("cost")
    for i in range(n):
        bao.put(f"secret/{prefix}/s{i}", {"value": f"bao-canary-cost-{i}"})
    env = {f"KV_{i}": f"vault://secret/{prefix}/s{i}#value" for i in range(n)}
    env.update(VAULT_ADDR=bao.address, HOME=str(home), DB="vault://database/creds/app#username")
    config = vault_config(home / "secretinit.toml", approle_files(home, approle, secret_id(bao)))

    def counts() -> dict[str, int]:
        paths = {
            "login": LOGIN_PATH,
            "mounts": "sys/internal/ui/mounts/",
            "kv": f"secret/data/{prefix}/",
            "creds": "database/creds/app",
            "renew": "sys/leases/renew",
        }
        found = dict.fromkeys(paths, 0)
        for line in bao.audit_log.read_text().splitlines():
            entry = json.loads(line)
            if entry.get("type") != "request":
                continue
            path = entry["request"].get("path", "")
            for key, start in paths.items():
                if path.startswith(start):
                    found[key] += 1
        return found

    before = counts()
    options = ["--config", str(config), "--dir", str(secrets_dir), "--refresh", "1"]
    running = refreshing(options, env, ["DB"], refresh_log)
    try:
        running.expect("files")
        after_start = counts()
        refresh_log.wait_for('"event": "refresh_unchanged"')
        after_one = counts()
        running.send(signal.SIGTERM)
        running.wait()
    finally:
        running.kill()
    start = {k: after_start[k] - before[k] for k in before}
    refresh = {k: after_one[k] - after_start[k] for k in before}
    assert start == {"login": 1, "mounts": 2, "kv": n, "creds": 1, "renew": 0}
    assert refresh == {"login": 0, "mounts": 1, "kv": n, "creds": 0, "renew": 0}
