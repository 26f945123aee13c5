"""``secretinit run`` end to end: AppRole credentials as Docker secrets, DB_PASSWORD from Vault."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from conftest import assert_no_leak, run_secretinit

from .conftest import secret_id

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
    for name, value in (("vault_role_id", approle), ("vault_secret_id", the_secret_id)):
        (secrets / name).write_text(value + "\n")
        (secrets / name).chmod(0o400)
    config = tmp_path / "secretinit.toml"
    config.write_text(
        "[providers.vault]\n"
        'auth = "approle"\n'
        f'role_id_file = "{secrets / "vault_role_id"}"\n'
        f'secret_id_file = "{secrets / "vault_secret_id"}"\n'
    )
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
