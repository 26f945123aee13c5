"""``secretinit run`` end to end: AppRole credentials as Docker secrets, DB_PASSWORD from Vault."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from conftest import assert_no_leak, run_secretinit

from .conftest import approle_files, secret_id, vault_config

APP = """
import hashlib, json, os, stat
path = os.environ["DB_PASSWORD_FILE"]
info = os.stat(path)
print(json.dumps({
    "file": path,
    "mode": stat.S_IMODE(info.st_mode),
    "owner": info.st_uid,
    "sha256": hashlib.sha256(open(path, "rb").read()).hexdigest(),
    "DB_PASSWORD" : "DB_PASSWORD" in os.environ,
    "VAULT_TOKEN": "VAULT_TOKEN" in os.environ,
}))
"""


def test_run_with_approle_from_docker_secrets(
    bao: Any, approle: str, tmp_path: Path, home: Path
) -> None:
    password = "e2e-Pässword-" + os.urandom(6).hex()
    bao.put("secret/app/db", {"password": password, "username": "app"})
    secrets = tmp_path / "run-secrets"  # what Docker mounts at /run/secrets
    secrets.mkdir()
    the_secret_id = secret_id(bao)
    options = approle_files(secrets, approle, the_secret_id)
    for path in secrets.iterdir():
        path.chmod(0o400)
    config = vault_config(tmp_path / "secretinit.toml", options)
    out = tmp_path / "secret-files"
    env = {
        "VAULT_ADDR": bao.address,
        "HOME": str(home),
        "DB_PASSWORD": "vault://secret/app/db#password",
        "SECRETINIT_CONFIG": str(config),
    }
    before = bao.accessors()
    result = run_secretinit(["run", "--dir", str(out), "--", sys.executable, "-c", APP], env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["file"] == str(out / "DB_PASSWORD")
    assert report["mode"] == 0o400
    assert report["owner"] == os.geteuid()
    assert report["sha256"] == hashlib.sha256(password.encode()).hexdigest()
    assert report["DB_PASSWORD"] is False  # NAME goes once NAME_FILE is set
    assert report["VAULT_TOKEN"] is False
    assert bao.accessors() <= before, "the AppRole login token was not revoked"
    assert_no_leak([password, the_secret_id, approle], result.stdout, result.stderr)


def wrapped_approle_config(bao: Any, approle: str, tmp_path: Path) -> tuple[Path, str]:
    """A config for AppRole with a response-wrapped secret id in a file; the wrapping token."""
    secrets = tmp_path / "run-secrets"
    secrets.mkdir()
    wrapping_token = secret_id(bao, wrap_ttl="5m")
    options = {**approle_files(secrets, approle, wrapping_token), "secret_id_wrapped": True}
    return vault_config(tmp_path / "secretinit.toml", options), wrapping_token


def test_check_leaves_a_wrapped_secret_id_for_the_run(
    bao: Any, approle: str, tmp_path: Path, home: Path
) -> None:
    password = "wrapped-run-" + os.urandom(6).hex()
    bao.put("secret/app/wrapped", {"password": password})
    config, wrapping_token = wrapped_approle_config(bao, approle, tmp_path)
    env = {
        "VAULT_ADDR": bao.address,
        "HOME": str(home),
        "DB_PASSWORD": "vault://secret/app/wrapped#password",
        "SECRETINIT_CONFIG": str(config),
    }
    before = bao.accessors()
    unwraps = bao.audited_requests("sys/wrapping/unwrap")
    checked = run_secretinit(["check", "--log-level", "debug"], env)
    assert checked.returncode == 0, checked.stderr
    assert "not checked: not unwrapped (a wrapped secret id unwraps once), no login" in (
        checked.stdout
    )
    assert ": valid, unused, made by auth/approle/role/app/secret-id, TTL 300 s\n" in (
        checked.stdout
    )
    assert "sys/wrapping/lookup" in checked.stderr  # what check asked the server
    assert bao.accessors() == before  # no login: no token was made
    assert bao.audited_requests("sys/wrapping/unwrap") == unwraps

    out = tmp_path / "files"
    result = run_secretinit(["run", "--dir", str(out), "--", sys.executable, "-c", APP], env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["sha256"] == hashlib.sha256(password.encode()).hexdigest()
    assert_no_leak(
        [password, wrapping_token, approle],
        checked.stdout,
        checked.stderr,
        result.stdout,
        result.stderr,
    )


def test_check_reports_a_wrapping_token_already_used(
    bao: Any, approle: str, tmp_path: Path, home: Path
) -> None:
    config, wrapping_token = wrapped_approle_config(bao, approle, tmp_path)
    bao.api("POST", "sys/wrapping/unwrap", token=wrapping_token)  # someone else unwrapped it
    env = {
        "VAULT_ADDR": bao.address,
        "HOME": str(home),
        "DB_PASSWORD": "vault://secret/app/wrapped#password",
    }
    result = run_secretinit(["check", "--config", str(config)], env)
    assert result.returncode == 69, result.stderr
    assert "wrapping token is not valid or does not exist" in result.stdout + result.stderr
    assert_no_leak([wrapping_token, approle], result.stdout, result.stderr)


def test_check_refuses_a_wrapping_token_made_elsewhere(
    bao: Any, approle: str, tmp_path: Path, home: Path
) -> None:
    config, _ = wrapped_approle_config(bao, approle, tmp_path)
    # A wrapped response of another path, substituted for the secret id's.
    other = bao.api(
        "POST", "sys/wrapping/wrap", {"secret_id": "x"}, headers={"X-Vault-Wrap-TTL": "5m"}
    )
    other_token = str(other["wrap_info"]["token"])
    (tmp_path / "run-secrets" / "vault_secret_id").write_text(other_token)
    env = {"VAULT_ADDR": bao.address, "HOME": str(home), "A": "vault://secret/app/a#k"}
    result = run_secretinit(["check", "--config", str(config)], env)
    assert result.returncode == 69, result.stderr
    assert "was not made by auth/approle/role/NAME/secret-id but by sys/wrapping/wrap" in (
        result.stdout + result.stderr
    )
    assert_no_leak([other_token], result.stdout, result.stderr)


def test_debug_log_names_login_mounts_and_revocation_never_credentials(
    bao: Any, approle: str, tmp_path: Path, home: Path
) -> None:
    password = "debug-log-" + os.urandom(6).hex()
    bao.put("secret/app/debug", {"password": password})
    the_secret_id = secret_id(bao)
    options = approle_files(home, approle, the_secret_id)
    config = vault_config(tmp_path / "secretinit.toml", options)
    env = {
        "VAULT_ADDR": bao.address,
        "HOME": str(home),
        "DB_PASSWORD": "vault://secret/app/debug#password",
    }
    args = ["fetch", "--config", str(config), "--dir", str(tmp_path / "o"), "--log-level", "debug"]
    result = run_secretinit(args, env)
    assert result.returncode == 0, result.stderr
    for expected in (
        "vault: logging in with AppRole at auth/approle",
        "vault: logged in with AppRole at auth/approle: a token of 600 s, policies default, reader",
        "vault: secret/app/debug is on the mount secret/ (KV version 2)",
        "vault: revoked the login token",
    ):
        assert expected in result.stderr
    assert_no_leak([password, the_secret_id, approle], result.stdout, result.stderr)
