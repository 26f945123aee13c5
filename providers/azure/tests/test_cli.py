"""secretinit itself, as a subprocess, reading the fake Key Vault with DefaultAzureCredential.

The subprocess finds its identity as an App Service container does: through
``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER`` (set by the ``azure_env``
fixture), with ``REQUESTS_CA_BUNDLE`` naming the test's CA.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import sys
from pathlib import Path

import pytest
from secretinit_azure.testing import FakeKeyVault

from conftest import assert_no_leak, run_secretinit

pytestmark = pytest.mark.usefixtures("azure_env")

# The child reports what it got without printing a value: a digest per file.
CHILD = """
import hashlib, json, os, sys
names = sys.argv[2:]
report = {
    "files": {
        n: hashlib.sha256(open(os.environ[n + "_FILE"], "rb").read()).hexdigest() for n in names
    },
    "modes": {n: oct(os.stat(os.environ[n + "_FILE"]).st_mode & 0o777) for n in names},
    "env": sorted(k for k in os.environ if k in names or k.startswith("AZURE_CLIENT")),
}
open(sys.argv[1], "w").write(json.dumps(report))
"""


def digest(value: str | bytes) -> str:
    return hashlib.sha256(value.encode() if isinstance(value, str) else value).hexdigest()


def write_config(tmp_path: Path) -> Path:
    config = tmp_path / "secretinit.toml"
    config.write_text(
        "# The fake answers on 127.0.0.1, outside Key Vault's domain.\n"
        "[providers.azure]\n"
        "verify_challenge_resource = false\n"
    )
    return config


def outputs(result: object) -> tuple[str, str]:
    return getattr(result, "stdout", ""), getattr(result, "stderr", "")


def test_run_reads_with_default_credential_and_managed_identity(
    fake_vault: FakeKeyVault, tmp_path: Path
) -> None:
    password = "pw-canary-5c1e-ünïcode"
    old_key = "api-key-old-canary-77a0"
    fake_vault.set_secret("db", json.dumps({"user": "app", "password": password}))
    old = fake_vault.set_secret("api-key", old_key)
    fake_vault.set_secret("api-key", "api-key-new-canary-88b1")
    certificate = bytes(range(256)) * 4
    fake_vault.set_secret(
        "tls-key",
        base64.b64encode(certificate).decode(),
        tags={"file-encoding": "base64"},
    )
    client_secret = "client-secret-canary-0d9f"
    report = tmp_path / "report.json"
    env = {
        "DB_PASSWORD": f"azure-kv://{fake_vault.host}/db#password",
        "API_KEY": f"azure-kv://{fake_vault.host}/api-key/{old}",
        "TLS_KEY": f"azure-kv://{fake_vault.host}/tls-key",
        # Not a usable service principal without a tenant and client id; it
        # must still not reach the application.
        "AZURE_CLIENT_SECRET": client_secret,
    }
    result = run_secretinit(
        [
            "run",
            "--config",
            str(write_config(tmp_path)),
            "--dir",
            str(tmp_path / "secrets"),
            "--",
            sys.executable,
            "-c",
            CHILD,
            str(report),
            "DB_PASSWORD",
            "API_KEY",
            "TLS_KEY",
        ],
        env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    got = json.loads(report.read_text())
    assert got["files"] == {
        "DB_PASSWORD": digest(password),
        "API_KEY": digest(old_key),
        "TLS_KEY": digest(certificate),
    }
    assert set(got["modes"].values()) == {"0o400"}
    assert got["env"] == []  # no NAME next to NAME_FILE, no client secret
    assert fake_vault.tokens_issued == 1
    assert "resolved 3 secrets" in result.stderr
    assert_no_leak(
        [password, old_key, client_secret, fake_vault.identity_header, *fake_vault.issued],
        *outputs(result),
    )


def test_fetch_reports_every_failure_at_once(fake_vault: FakeKeyVault, tmp_path: Path) -> None:
    fake_vault.set_secret("good", "good-canary-11aa")
    fake_vault.set_secret("denied", "denied-canary-22bb")
    fake_vault.deny("denied")
    fake_vault.set_secret("disabled", "disabled-canary-33cc", enabled=False)
    fake_vault.set_secret("doc", json.dumps({"k": "doc-canary-44dd"}))
    env = {
        "GOOD": f"azure-kv://{fake_vault.host}/good",
        "MISSING": f"azure-kv://{fake_vault.host}/missing",
        "DENIED": f"azure-kv://{fake_vault.host}/denied",
        "DISABLED": f"azure-kv://{fake_vault.host}/disabled",
        "NO_KEY": f"azure-kv://{fake_vault.host}/doc#absent",
    }
    args = ["fetch", "--config", str(write_config(tmp_path)), "--dir", str(tmp_path / "out")]
    result = run_secretinit(args, env, timeout=60)
    assert result.returncode == 69, result.stderr
    assert "4 required secrets could not be resolved" in result.stderr
    lines = {line.split("(")[0].strip(" -"): line for line in result.stderr.splitlines()}
    assert "not found" in lines["MISSING"]
    assert "SecretNotFound" in lines["MISSING"]
    assert "403 AccessDenied" in lines["DENIED"]
    assert "is disabled (403 SecretDisabled)" in lines["DISABLED"]
    assert "no key 'absent'" in lines["NO_KEY"]
    assert not (tmp_path / "out" / "GOOD").exists()  # nothing is written unless all resolve
    canaries = ["good-canary-11aa", "denied-canary-22bb", "disabled-canary-33cc", "doc-canary-44dd"]
    assert_no_leak([*canaries, *fake_vault.issued], *outputs(result))


def test_fetch_retries_throttling_and_server_errors(
    fake_vault: FakeKeyVault, tmp_path: Path
) -> None:
    fake_vault.set_secret("throttled", "throttled-value")
    fake_vault.set_secret("flaky", "flaky-value")
    fake_vault.fault("throttled", 429, times=1, retry_after=1)
    fake_vault.fault("flaky", 503, times=2)
    env = {
        "THROTTLED": f"azure-kv://{fake_vault.host}/throttled",
        "FLAKY": f"azure-kv://{fake_vault.host}/flaky",
    }
    out = tmp_path / "out"
    args = ["fetch", "--config", str(write_config(tmp_path)), "--dir", str(out)]
    result = run_secretinit([*args, "--timeout", "20s"], env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (out / "THROTTLED").read_bytes() == b"throttled-value"
    assert (out / "FLAKY").read_bytes() == b"flaky-value"
    assert stat.S_IMODE(os.stat(out / "FLAKY").st_mode) == 0o400
    assert fake_vault.tokens_issued == 1


def test_fetch_gives_up_on_a_vault_that_stays_down_at_the_deadline(
    fake_vault: FakeKeyVault, tmp_path: Path
) -> None:
    fake_vault.set_secret("down", "down-value")
    fake_vault.fault("down", 503, times=10_000)
    env = {"DOWN": f"azure-kv://{fake_vault.host}/down"}
    args = ["fetch", "--config", str(write_config(tmp_path)), "--dir", str(tmp_path / "o")]
    result = run_secretinit([*args, "--timeout", "2s"], env, timeout=60)
    assert result.returncode == 69, result.stderr
    assert "unreachable" in result.stderr
    assert "503" in result.stderr
    assert "gave up after" in result.stderr


def test_providers_lists_azure_kv() -> None:
    result = run_secretinit(["providers"], timeout=60)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("azure-kv "))
    assert "secretinit-azure" in line
    assert "secretinit_azure:AzureKeyVaultProvider" in line
