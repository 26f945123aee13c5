"""``--refresh`` against OpenBao: a KV v2 secret updated between two refreshes, and the
server stopped during a refresh (the old files stay; the refreshes recover when it is back)."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

from secretinit_vault.testing import DevServer

from conftest import assert_no_leak, secretinit_executable
from tests.refreshing import LogFile, files_line, refreshing

from .conftest import secret_id, start_server


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


def test_each_refresh_logs_in_and_revokes_its_token(
    bao: Any, approle: str, home: Path, secrets_dir: Path, refresh_log: LogFile
) -> None:
    bao.put("secret/app/approle-refresh", {"password": "bao-canary-ar-0d4f"})
    (home / "role_id").write_text(approle)
    (home / "secret_id").write_text(secret_id(bao))
    config = home / "secretinit.toml"
    config.write_text(
        '[providers.vault]\nauth = "approle"\n'
        f'role_id_file = "{home / "role_id"}"\nsecret_id_file = "{home / "secret_id"}"\n'
    )
    env = {
        "VAULT_ADDR": bao.address,
        "HOME": str(home),
        "DB_PASSWORD": "vault://secret/app/approle-refresh#password",
    }
    before = bao.accessors()
    options = ["--config", str(config), "--dir", str(secrets_dir), "--refresh", "1"]
    running = refreshing(options, env, ["DB_PASSWORD"], refresh_log)
    try:
        running.expect("files")
        for _ in range(2):
            refresh_log.wait_for('"event": "refresh_unchanged"')
        # Without leases, no run keeps its login token: none piles up.
        assert bao.accessors() <= before
        running.send(signal.SIGTERM)
        running.wait()
    finally:
        running.kill()
    assert_no_leak(["bao-canary-ar-0d4f"], refresh_log.text(), "\n".join(running.lines))
