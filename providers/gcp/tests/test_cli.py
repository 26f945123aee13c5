"""secretinit itself, as a subprocess, reading the fake Secret Manager with real credentials.

Each subprocess finds its credentials as a container would: the metadata
server (``GCE_METADATA_HOST``, as on GKE or Cloud Run) or a key file in
``GOOGLE_APPLICATION_CREDENTIALS``; ``REQUESTS_CA_BUNDLE`` and
``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`` name the test's CA.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from secretinit_gcp.testing import FakeSecretManager

from conftest import assert_no_leak, run_secretinit
from secretinit.testing.ports import free_port

pytestmark = pytest.mark.usefixtures("gcp_env")

# The child reports what it got without printing a value: a digest per file.
CHILD = """
import hashlib, json, os, sys
names = sys.argv[2:]
report = {
    "files": {
        n: hashlib.sha256(open(os.environ[n + "_FILE"], "rb").read()).hexdigest() for n in names
    },
    "modes": {n: oct(os.stat(os.environ[n + "_FILE"]).st_mode & 0o777) for n in names},
    "env": sorted(k for k in os.environ if k in names),
}
open(sys.argv[1], "w").write(json.dumps(report))
"""


def digest(value: bytes) -> str:
    return hashlib.sha256(value).hexdigest()


def write_config(tmp_path: Path, table: dict[str, Any]) -> Path:
    config = tmp_path / "secretinit.toml"
    lines = ["[providers.gcp]", *(f"{key} = {json.dumps(value)}" for key, value in table.items())]
    config.write_text("\n".join(lines) + "\n")
    return config


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_run_reads_with_the_metadata_server(
    fake: FakeSecretManager, tmp_path: Path, transport: str
) -> None:
    password = "pw-canary-5c1e-ünïcode"
    old_key = b"api-key-old-canary-77a0"
    certificate = bytes(range(256)) * 4
    fake.add_version("db", json.dumps({"user": "app", "password": password}).encode())
    fake.add_version("api-key", old_key)
    fake.add_version("api-key", b"api-key-new-canary-88b1")
    fake.add_version("tls-key", certificate, location="us-central1")
    fake.add_version("berglas", b"berglas-canary-19fe")
    report = tmp_path / "report.json"
    p = fake.project
    env = {
        "DB_PASSWORD": "gcp-sm://db#password",
        "API_KEY": f"gcp-sm://projects/{p}/secrets/api-key/versions/1",
        "TLS_KEY": f"gcp-sm://projects/{p}/locations/us-central1/secrets/tls-key",
        "LEGACY": f"sm://{p}/berglas",
    }
    names = list(env)
    config = write_config(tmp_path, fake.provider_options(transport))
    result = run_secretinit(
        [
            *("run", "--config", str(config), "--dir", str(tmp_path / "secrets")),
            *("--log-level", "debug", "--log-format", "json", "--"),
            *(sys.executable, "-c", CHILD, str(report), *names),
        ],
        env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    got = json.loads(report.read_text())
    assert got["files"] == {
        "DB_PASSWORD": digest(password.encode()),
        "API_KEY": digest(old_key),
        "TLS_KEY": digest(certificate),
        "LEGACY": digest(b"berglas-canary-19fe"),
    }
    assert set(got["modes"].values()) == {"0o400"}
    assert got["env"] == []  # no NAME next to NAME_FILE
    # gcp-sm and sm run as two providers, each with its credentials: a token each.
    assert fake.token_requests == [("metadata", "compute")] * 2
    assert {access.transport for access in fake.accesses} == {transport}
    assert "resolved 4 secrets" in result.stderr
    assert_no_leak(
        [password, old_key, b"api-key-new-canary-88b1", certificate, *fake.issued],
        result.stdout,
        result.stderr,
    )


def test_fetch_with_a_key_file_reports_every_failure_at_once(
    fake: FakeSecretManager, tmp_path: Path
) -> None:
    key = tmp_path / "key.json"
    private_key = fake.write_service_account_key(key)
    fake.add_version("good", b"good-canary-11aa")
    fake.add_version("denied", b"denied-canary-22bb")
    fake.deny("denied")
    fake.set_state("disabled", fake.add_version("disabled", b"disabled-canary-33cc"), "DISABLED")
    fake.add_version("doc", json.dumps({"k": "doc-canary-44dd"}).encode())
    fake.add_version("tampered", b"tampered-canary-55ee")
    fake.corrupt("tampered")
    env = {
        "GOOGLE_APPLICATION_CREDENTIALS": str(key),
        "GOOD": "gcp-sm://good",
        "MISSING": "gcp-sm://missing",
        "DENIED": "gcp-sm://denied",
        "DISABLED": "gcp-sm://disabled",
        "NO_KEY": "gcp-sm://doc#absent",
        "TAMPERED": "gcp-sm://tampered",
    }
    out = tmp_path / "out"
    config = write_config(tmp_path, fake.provider_options())
    args = ["fetch", "--config", str(config), "--dir", str(out), "--timeout", "3s"]
    result = run_secretinit([*args, "--log-level", "debug"], env, timeout=60)
    assert result.returncode == 69, result.stderr
    assert "5 required secrets could not be resolved" in result.stderr
    lines = {line.split("(")[0].strip(" -"): line for line in result.stderr.splitlines()}
    assert "not found" in lines["MISSING"]
    assert "NOT_FOUND" in lines["MISSING"]
    assert "PERMISSION_DENIED" in lines["DENIED"]
    assert f"the service account key in GOOGLE_APPLICATION_CREDENTIALS ({key})" in lines["DENIED"]
    assert "is disabled (FAILED_PRECONDITION" in lines["DISABLED"]
    assert "no key 'absent'" in lines["NO_KEY"]
    # Retried until the deadline, then reported: never written.
    assert "does not match its CRC32C checksum" in lines["TAMPERED"]
    assert "gave up after" in lines["TAMPERED"]
    assert not out.exists() or not any(out.iterdir())  # nothing is written unless all resolve
    assert fake.token_requests == []  # the key signed its own tokens
    canaries = [
        b"good-canary-11aa",
        b"denied-canary-22bb",
        b"disabled-canary-33cc",
        b"doc-canary-44dd",
        b"tampered-canary-55ee",
    ]
    key_body = private_key.splitlines()[1]  # a line of the key's base64
    assert_no_leak([*canaries, key_body], result.stdout, result.stderr)


def test_fetch_retries_unavailable_and_quota_errors(
    fake: FakeSecretManager, tmp_path: Path
) -> None:
    fake.add_version("throttled", b"throttled-value")
    fake.add_version("flaky", b"flaky-value")
    fake.fault("throttled", "RESOURCE_EXHAUSTED", times=2, retry_after=1)
    fake.fault("flaky", "UNAVAILABLE", times=2)
    env = {"THROTTLED": "gcp-sm://throttled", "FLAKY": "gcp-sm://flaky"}
    out = tmp_path / "out"
    config = write_config(tmp_path, fake.provider_options())
    args = ["fetch", "--config", str(config), "--dir", str(out), "--timeout", "20s"]
    started = time.monotonic()
    result = run_secretinit(args, env, timeout=60)
    assert result.returncode == 0, result.stderr
    # Each RESOURCE_EXHAUSTED asked for 1 s (RetryInfo): never retried sooner.
    assert time.monotonic() - started >= 2
    assert (out / "THROTTLED").read_bytes() == b"throttled-value"
    assert (out / "FLAKY").read_bytes() == b"flaky-value"
    assert stat.S_IMODE(os.stat(out / "FLAKY").st_mode) == 0o400
    assert fake.tokens_issued == 1


def test_fetch_gives_up_on_a_service_that_stays_down_at_the_deadline(
    fake: FakeSecretManager, tmp_path: Path
) -> None:
    fake.add_version("down", b"down-value")
    fake.fault("down", "UNAVAILABLE", times=10_000)
    config = write_config(tmp_path, fake.provider_options())
    args = ["fetch", "--config", str(config), "--dir", str(tmp_path / "o"), "--timeout", "2s"]
    result = run_secretinit(args, {"DOWN": "gcp-sm://down"}, timeout=60)
    assert result.returncode == 69, result.stderr
    assert "unreachable" in result.stderr
    assert "UNAVAILABLE" in result.stderr
    assert "gave up after" in result.stderr


@pytest.mark.parametrize(
    ("transport", "variable"),
    [("rest", "REQUESTS_CA_BUNDLE"), ("grpc", "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH")],
)
def test_an_untrusted_certificate_fails_at_once_and_names_the_variable(
    fake: FakeSecretManager, tmp_path: Path, transport: str, variable: str
) -> None:
    # A subprocess: gRPC reads its roots once per process.
    fake.add_version("db", b"db-value")
    config = write_config(tmp_path, fake.provider_options(transport))
    env = {variable: "/etc/ssl/certs/ca-certificates.crt", "DB": "gcp-sm://db"}
    args = ["fetch", "--config", str(config), "--dir", str(tmp_path / "o"), "--timeout", "20s"]
    result = run_secretinit(args, env, timeout=60)
    assert result.returncode == 69, result.stderr
    assert f"is its certificate's CA in {variable}?" in result.stderr
    assert "gave up after" not in result.stderr  # not retried: a certificate does not change
    assert fake.accesses == []


def test_no_credentials_anywhere_names_every_source_tried(
    fake: FakeSecretManager, tmp_path: Path
) -> None:
    # No key variable, no gcloud file under HOME, and the metadata address a
    # closed loopback port: google-auth's whole chain finds nothing.
    closed = f"127.0.0.1:{free_port()}"
    env = {"GCE_METADATA_HOST": closed, "GCE_METADATA_IP": closed, "DB": "gcp-sm://db"}
    config = write_config(tmp_path, fake.provider_options())
    args = ["check", "--config", str(config)]
    result = run_secretinit(args, env, timeout=60)
    assert result.returncode == 69, result.stderr + result.stdout
    output = result.stdout + result.stderr
    assert "access denied" in output
    assert "no Google Cloud credentials found: GOOGLE_APPLICATION_CREDENTIALS is not set" in output
    gcloud = Path(os.environ["HOME"]) / ".config/gcloud/application_default_credentials.json"
    assert f"no metadata server answered at {closed}" in output
    assert f"no gcloud application default credentials ({gcloud}"[:60] in output
    assert fake.accesses == []


def test_a_short_reference_without_a_project(fake: FakeSecretManager, tmp_path: Path) -> None:
    key = tmp_path / "key.json"
    fake.write_service_account_key(key)
    info = json.loads(key.read_text())
    del info["project_id"]  # an older key file carries none
    key.write_text(json.dumps(info))
    env = {"GOOGLE_APPLICATION_CREDENTIALS": str(key), "DB": "gcp-sm://db"}
    config = write_config(tmp_path, fake.provider_options())
    result = run_secretinit(["check", "--config", str(config)], env, timeout=60)
    assert result.returncode == 69
    output = result.stdout + result.stderr
    assert "no project for secret 'db'" in output
    assert "set [providers.gcp] project or GOOGLE_CLOUD_PROJECT" in output


def test_providers_lists_gcp_sm_and_sm() -> None:
    result = run_secretinit(["providers"], timeout=60)
    assert result.returncode == 0, result.stderr
    for scheme, target in (
        ("gcp-sm", "secretinit_gcp:SecretManagerProvider"),
        ("sm", "secretinit_gcp:BerglasProvider"),
    ):
        line = next(line for line in result.stdout.splitlines() if line.startswith(f"{scheme} "))
        assert "secretinit-gcp" in line
        assert target in line
