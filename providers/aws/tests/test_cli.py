"""The real ``secretinit`` as a subprocess, sent to moto by botocore's endpoint variables only."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import assert_no_leak, run_secretinit  # type: ignore[import-not-found]

# The application: reports what it was given into a file (never to stdout,
# which the test searches for leaks): each NAME_FILE's bytes, whether NAME is
# still set, and which AWS variables it kept.
APP = """
import json, os, sys
aws = sorted(k for k in os.environ if k.startswith("AWS_"))
report = {"files": {}, "names_left": [], "aws": aws}
for key, path in os.environ.items():
    if key.endswith("_FILE") and path.startswith(sys.argv[2]):
        report["files"][key[:-5]] = open(path, "rb").read().hex()
for name in sys.argv[3:]:
    if name in os.environ:
        report["names_left"].append(name)
open(sys.argv[1], "w").write(json.dumps(report))
"""


@pytest.fixture
def service_endpoints(aws_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The service-specific variables, not the generic AWS_ENDPOINT_URL, reach moto."""
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", aws_server.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", aws_server.url)


@pytest.mark.usefixtures("service_endpoints")
def test_run_gives_the_app_every_kind_of_secret(
    sm: Any, ssm: Any, aws_server: Any, unique: str, tmp_path: Path
) -> None:
    values = {
        "password": "pw-Zq81-never-logged",
        "previous": "pw-old-Yk22-never-logged",
        "api": "api-Xc93-never-logged",
        "token": "tok-Wb74-never-logged",
    }
    blob = bytes(range(256)) * 4
    sm.create_secret(Name=f"{unique}/db", SecretString=values["previous"])
    sm.put_secret_value(
        SecretId=f"{unique}/db", SecretString=json.dumps({"password": values["password"]})
    )
    sm.create_secret(Name=f"{unique}/blob", SecretBinary=blob)
    ssm.put_parameter(Name=f"/{unique}/api", Value=values["api"], Type="SecureString")
    ssm.put_parameter(
        Name=f"/{unique}/svc", Value=json.dumps({"token": values["token"]}), Type="SecureString"
    )
    env = {
        "DB_PASSWORD": f"aws-sm://{unique}/db#password",
        "DB_OLD": f"aws-sm://{unique}/db?version-stage=AWSPREVIOUS",
        "CERT": f"aws-sm://{unique}/blob",
        "API_KEY": f"aws-ssm:///{unique}/api",
        "SVC_TOKEN": f"aws-ssm:///{unique}/svc#token",
    }
    report, secrets = tmp_path / "report.json", tmp_path / "secrets"
    aws_server.reset()
    app = [sys.executable, "-c", APP, str(report), str(secrets), *env]
    result = run_secretinit(["run", "--dir", str(secrets), "--", *app], env)
    assert result.returncode == 0, result.stderr
    assert_no_leak(
        [*values.values(), os.environ["AWS_SECRET_ACCESS_KEY"]], result.stdout, result.stderr
    )
    got = json.loads(report.read_text())
    assert {name: bytes.fromhex(h) for name, h in got["files"].items()} == {
        "DB_PASSWORD": values["password"].encode(),
        "DB_OLD": values["previous"].encode(),
        "CERT": blob,
        "API_KEY": values["api"].encode(),
        "SVC_TOKEN": values["token"].encode(),
    }
    assert got["names_left"] == []
    # Kept on purpose: the application may use AWS itself (README, "Credentials").
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(got["aws"])
    assert aws_server.counted() == {
        "BatchGetSecretValue": 1,
        "GetSecretValue": 1,
        "GetParameters": 1,
    }
    assert "aws-sm: 3" in result.stderr
    assert "aws-ssm: 2" in result.stderr


@pytest.mark.usefixtures("service_endpoints")
def test_run_reports_every_failure_and_never_starts_the_app(
    sm: Any, unique: str, tmp_path: Path
) -> None:
    sm.create_secret(Name=f"{unique}/gone", SecretString="gone-Vt55-never-logged")
    sm.delete_secret(SecretId=f"{unique}/gone")
    sm.create_secret(Name=f"{unique}/ok", SecretString="ok-Ur66-never-logged")
    marker = tmp_path / "app-ran"
    env = {
        "OK": f"aws-sm://{unique}/ok",
        "MISSING": f"aws-sm://{unique}/absent",
        "GONE": f"aws-sm://{unique}/gone",
        "PARAM": f"aws-ssm:///{unique}/absent",
    }
    result = run_secretinit(["run", "--dir", str(tmp_path / "s"), "--", "touch", str(marker)], env)
    assert result.returncode == 69, result.stderr
    assert not marker.exists()
    assert "3 required secrets could not be resolved" in result.stderr
    for name in ("MISSING", "GONE", "PARAM"):
        assert f"{name} ({env[name]}" in result.stderr
    assert "marked for deletion" in result.stderr
    assert_no_leak(["gone-Vt55-never-logged", "ok-Ur66-never-logged"], result.stdout, result.stderr)


def test_region_from_the_config_table(
    aws_server: Any, unique: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    aws_server.admin("secretsmanager", aws_server.other_region).create_secret(
        Name=f"{unique}/eu", SecretString="eu-Ts77"
    )
    aws_server.admin("ssm", aws_server.other_region).put_parameter(
        Name=f"/{unique}/eu", Value="eu-Sr88", Type="SecureString"
    )
    config = tmp_path / "secretinit.toml"
    config.write_text(
        f'[providers.aws]\nregion = "{aws_server.other_region}"\n\n'
        f'[secrets.SM]\nfrom = "aws-sm://{unique}/eu"\n\n'
        f'[secrets.SSM]\nfrom = "aws-ssm:///{unique}/eu"\n'
    )
    out = tmp_path / "out"
    result = run_secretinit(["fetch", "--config", str(config), "--dir", str(out)])
    assert result.returncode == 0, result.stderr
    assert (out / "SM").read_bytes() == b"eu-Ts77"
    assert (out / "SSM").read_bytes() == b"eu-Sr88"


def test_aws_region_alone_is_honoured(
    aws_server: Any, unique: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As ECS and Lambda set it: AWS_REGION, and no AWS_DEFAULT_REGION, profile or table."""
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", aws_server.other_region)
    assert "AWS_PROFILE" not in os.environ
    aws_server.admin("secretsmanager", aws_server.other_region).create_secret(
        Name=f"{unique}/only-region", SecretString="region-Qp12"
    )
    aws_server.admin("ssm", aws_server.other_region).put_parameter(
        Name=f"/{unique}/only-region", Value="region-Po23", Type="SecureString"
    )
    out = tmp_path / "out"
    env = {"SM": f"aws-sm://{unique}/only-region", "SSM": f"aws-ssm:///{unique}/only-region"}
    result = run_secretinit(["fetch", "--dir", str(out)], env)
    assert result.returncode == 0, result.stderr
    assert (out / "SM").read_bytes() == b"region-Qp12"
    assert (out / "SSM").read_bytes() == b"region-Po23"


def test_aws_region_wins_over_aws_default_region(
    aws_server: Any, unique: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", aws_server.region)
    monkeypatch.setenv("AWS_REGION", aws_server.other_region)
    aws_server.admin("secretsmanager", aws_server.other_region).create_secret(
        Name=f"{unique}/where", SecretString="from-aws-region"
    )
    aws_server.admin("secretsmanager", aws_server.region).create_secret(
        Name=f"{unique}/where", SecretString="from-aws-default-region"
    )
    out = tmp_path / "out"
    result = run_secretinit(["fetch", "--dir", str(out)], {"W": f"aws-sm://{unique}/where"})
    assert result.returncode == 0, result.stderr
    assert (out / "W").read_bytes() == b"from-aws-region"


def test_without_a_region_a_name_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    result = run_secretinit(
        ["fetch", "--dir", str(tmp_path / "s")], {"DB": "aws-sm://app/db", "P": "aws-ssm:///a/b"}
    )
    assert result.returncode == 78, result.stderr  # EX_CONFIG: a bad declaration
    assert "variable DB: aws-sm://app/db: no AWS region" in result.stderr
    assert "variable P: aws-ssm:///a/b: no AWS region" in result.stderr
    assert "AWS_REGION" in result.stderr


def test_transient_failures_are_retried_until_they_pass(
    ssm: Any, aws_server: Any, unique: str, tmp_path: Path
) -> None:
    ssm.put_parameter(Name=f"/{unique}/p", Value="after-Rq99", Type="SecureString")
    aws_server.reset()
    # botocore makes one attempt a call: the two retries are the core's own.
    aws_server.fail("GetParameters", 400, "ThrottlingException", times=2)
    out = tmp_path / "out"
    args = ["fetch", "--dir", str(out), "--log-level", "debug"]
    result = run_secretinit(args, {"P": f"aws-ssm:///{unique}/p"})
    assert result.returncode == 0, result.stderr
    assert (out / "P").read_bytes() == b"after-Rq99"
    assert aws_server.counted() == {"GetParameters": 3}
    assert result.stderr.count("aws-ssm: 1 transient failure (1 throttled), retrying in") == 2


def test_persistent_throttling_gives_up_at_the_timeout(
    aws_server: Any, unique: str, tmp_path: Path
) -> None:
    aws_server.fail("BatchGetSecretValue", 400, "ThrottlingException", times=None)
    started = time.monotonic()
    result = run_secretinit(
        ["fetch", "--timeout", "3s", "--dir", str(tmp_path / "s")], {"X": f"aws-sm://{unique}/x"}
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 69, result.stderr
    assert "throttled: Secrets Manager is throttling requests (ThrottlingException: " in (
        result.stderr
    )
    assert "(gave up after " in result.stderr
    assert 2.5 < elapsed < 10, elapsed


def test_a_hung_server_does_not_hold_the_process_past_the_timeout(
    aws_server: Any, unique: str, tmp_path: Path
) -> None:
    aws_server.fail("GetParameters", 500, "InternalServerError", times=None, delay=30)
    started = time.monotonic()
    result = run_secretinit(
        ["fetch", "--timeout", "2s", "--dir", str(tmp_path / "s")], {"P": f"aws-ssm:///{unique}/p"}
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 69, result.stderr
    assert "unreachable" in result.stderr
    assert elapsed < 6, elapsed  # start-up, 2 s, and no wait for the hung request


def test_providers_lists_both_schemes() -> None:
    result = run_secretinit(["providers"])
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "secretinit-aws" in line]
    assert any("aws-sm" in line for line in lines)
    assert any("aws-ssm" in line for line in lines)
