"""The commands end to end, through the real ``secretinit`` executable."""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import secretinit._docker_secret
import secretinit._env_file  # noqa: F401  - imported before tests drop privileges
from conftest import ROOT, run_secretinit
from secretinit._cli import cli
from tests.processes import Running

EXAMPLES = ROOT / "examples"
DEV_VALUE = "dev-db-password-123"  # examples/dev.env


def test_env_reference_becomes_a_private_file_on_tmpfs() -> None:
    """Issue 2, item 2, as written there."""
    script = (
        'cat "$DB_PASSWORD_FILE"; echo; env; '
        'dir="$(dirname "$DB_PASSWORD_FILE")"; '
        'echo "mode $(stat -c %a "$DB_PASSWORD_FILE") $(stat -c %a "$dir")"; '
        'echo "fs $(stat -f -c %T "$(dirname "$DB_PASSWORD_FILE")")"'
    )
    result = run_secretinit(
        ["run", "--", "sh", "-c", script],
        {"DB_PASSWORD": "env-file://examples/dev.env#DB_PASSWORD"},
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == DEV_VALUE
    assert not any(line.startswith("DB_PASSWORD=") for line in lines)
    assert any(line.startswith("DB_PASSWORD_FILE=") for line in lines)
    assert "mode 400 700" in lines
    assert "fs tmpfs" in lines


def test_demo_runs_the_production_config_from_the_env_file() -> None:
    result = run_secretinit(
        [
            "run",
            "--config",
            "examples/secretinit.toml",
            "--env-file",
            "examples/dev.env",
            "--",
            sys.executable,
            "examples/app.py",
        ],
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "DB_PASSWORD_FILE=" in out and "mode 0400" in out
    assert "API_TOKEN_FILE=" in out
    assert "DATABASE_URL is in the environment: a value of 46 characters" in out
    assert "TLS_KEY: neither TLS_KEY nor TLS_KEY_FILE is set" in out
    assert "tls.key: mode 0400" in out
    assert "directory" in out and "mode 0700" in out
    assert DEV_VALUE not in out + result.stderr
    assert "resolved 4 secrets" in result.stderr and "(env-file: 3)" in result.stderr


def test_fetch_writes_and_exits(tmp_path: Path) -> None:
    target = tmp_path / "secrets"
    result = run_secretinit(
        [
            "fetch",
            "--dir",
            str(target),
            "--config",
            "examples/secretinit.toml",
            "--env-file",
            "examples/dev.env",
        ],
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in target.iterdir()) == ["API_TOKEN", "DB_PASSWORD", "tls.key"]
    assert (target / "DB_PASSWORD").read_text() == DEV_VALUE
    assert (
        (target / "tls.key").read_text().startswith("-----BEGIN PRIVATE KEY-----\nnot-a-real-key")
    )
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    assert "secrets will reach the disk" in result.stderr  # tmp_path is on disk here


def test_environment_twins_configure_every_option(tmp_path: Path) -> None:
    target = tmp_path / "secrets"
    result = run_secretinit(
        ["fetch"],
        {
            "SECRETINIT_DIR": str(target),
            "SECRETINIT_CONFIG": "examples/secretinit.toml",
            "SECRETINIT_ENV_FILE": "examples/dev.env",
            "SECRETINIT_LOG_FORMAT": "json",
            "SECRETINIT_LOG_LEVEL": "warning",
            "SECRETINIT_TIMEOUT": "5s",
        },
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert (target / "DB_PASSWORD").exists()
    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert [r["level"] for r in records] == ["warning"]  # the disk warning; info is filtered


def test_check_reports_without_values(tmp_path: Path) -> None:
    result = run_secretinit(
        [
            "check",
            "--config",
            "examples/secretinit.toml",
            "--env-file",
            "examples/dev.env",
            "--dir",
            str(tmp_path / "x"),
        ],
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "DB_PASSWORD",
        "env-file://examples/dev.env#DB_PASSWORD",
        "->",
        "file",
        "DB_PASSWORD",
        "ok",
        "(19",
        "bytes)",
    ]
    assert "template of DB_PASSWORD" in lines[3] and "export value" in lines[3]
    assert DEV_VALUE not in result.stdout + result.stderr
    assert not (tmp_path / "x").exists()  # check writes nothing


def test_check_fails_on_a_missing_required_secret(tmp_path: Path) -> None:
    env_file = tmp_path / "dev.env"
    env_file.write_text("PRESENT=x\n")
    config = tmp_path / "c.toml"
    config.write_text(
        f'[secrets.PRESENT]\nfrom = "env-file://{env_file}#PRESENT"\n'
        f'[secrets.ABSENT]\nfrom = "env-file://{env_file}#ABSENT"\n'
        f'[secrets.MAYBE]\nfrom = "env-file://{env_file}#MAYBE"\noptional = true\n'
    )
    result = run_secretinit(["check", "--config", str(config)])
    assert result.returncode == 69
    out = result.stdout
    assert "PRESENT" in out and "ok (1 byte)" in out
    assert f"FAILED: not found: ABSENT is not set in {env_file}" in out
    assert "skipped (optional): not found" in out


def test_missing_required_secrets_never_start_the_child(tmp_path: Path) -> None:
    env_file = tmp_path / "dev.env"
    env_file.write_text("GOOD=fine-value\n")
    marker = tmp_path / "started"
    target = tmp_path / "secrets"
    result = run_secretinit(
        ["run", "--dir", str(target), "--", "touch", str(marker)],
        {
            "GOOD": f"env-file://{env_file}#GOOD",
            "ONE": f"env-file://{env_file}#ONE",
            "TWO": "docker-secret://two",
            "SECRETINIT_DOCKER_SECRETS_DIR": str(tmp_path / "no-secrets"),
        },
    )
    assert result.returncode == 69
    assert not marker.exists()
    assert not target.exists() or list(target.iterdir()) == []  # nothing half-written
    report = result.stderr
    assert "2 required secrets could not be resolved:" in report
    assert (
        f"ONE (env-file://{env_file}#ONE, environment variable ONE): not found: ONE is not set"
        in report
    )
    assert (
        "TWO (docker-secret://two, environment variable TWO): not found: no docker secret 'two'"
        in report
    )
    assert "Traceback" not in report


def test_optional_secret_is_skipped_and_not_exported(tmp_path: Path) -> None:
    env_file = tmp_path / "dev.env"
    env_file.write_text("A=a-value\n")
    config = tmp_path / "c.toml"
    config.write_text(f'[secrets.MAYBE]\nfrom = "env-file://{env_file}#MAYBE"\noptional = true\n')
    result = run_secretinit(
        [
            "run",
            "--config",
            str(config),
            "--",
            "sh",
            "-c",
            'echo "[${MAYBE-unset}] [${MAYBE_FILE-unset}]"',
        ],
        {"MAYBE": "left-over"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[unset] [unset]"
    assert "optional secret MAYBE skipped: not found" in result.stderr


def test_export_value_and_none(tmp_path: Path) -> None:
    env_file = tmp_path / "dev.env"
    env_file.write_text("USER=app\nPW=pw-9\n")
    config = tmp_path / "c.toml"
    config.write_text(
        f'[secrets.PW]\nfrom = "env-file://{env_file}#PW"\nexport = "none"\n'
        f'[secrets.USER]\nfrom = "env-file://{env_file}#USER"\nexport = "value"\n'
        '[secrets.DSN]\ntemplate = "${USER}:${PW}"\nfile = "dsn.txt"\nmode = "0440"\n'
    )
    script = (
        'echo "$USER|${PW-unset}|${PW_FILE-unset}"; cat "$DSN_FILE"; echo; '
        'ls "$(dirname "$DSN_FILE")"; stat -c %a "$DSN_FILE"'
    )
    result = run_secretinit(
        ["run", "--config", str(config), "--", "sh", "-c", script], {"PW": "stale"}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["app|unset|unset", "app:pw-9", "dsn.txt", "440"]


def test_value_export_refuses_a_nul_byte(tmp_path: Path) -> None:
    (tmp_path / "bin").write_bytes(b"a\x00b")
    config = tmp_path / "c.toml"
    config.write_text('[secrets.BIN]\nfrom = "docker-secret://bin"\nexport = "value"\n')
    result = run_secretinit(
        ["run", "--config", str(config), "--", "true"],
        {"SECRETINIT_DOCKER_SECRETS_DIR": str(tmp_path)},
    )
    assert result.returncode == 69
    assert "holds a NUL byte" in result.stderr


@pytest.mark.parametrize(
    ("environ", "config", "message"),
    [
        (
            {},
            '[secrets.X]\nfrom = "nosuch://x"\n',
            "no installed provider handles scheme 'nosuch' and none is known to provide it",
        ),
        ({}, '[secrets."../../etc/passwd"]\nfrom = "docker-secret://x"\n', "name is not valid"),
        (
            {},
            '[secrets.X]\nfrom = "docker-secret://x"\nfile = "a/b"\n',
            "file must be one file name",
        ),
        ({"X": "docker-secret://../x"}, None, "docker secret name '../x' is not valid"),
        ({"X": "env-file://dev.env"}, None, "needs #KEY"),
        ({"X": "docker-secret://x?version=2"}, None, "does not accept option 'version'"),
        (
            {},
            "[providers.docker-secret]\ndri = '/x'\n",
            "[providers.docker-secret] dri: not an option of docker-secret (did you mean 'dir'?)",
        ),
    ],
)
def test_bad_input_is_a_usage_error_without_traceback(
    tmp_path: Path, environ: dict[str, str], config: str | None, message: str
) -> None:
    args = ["run"]
    if config is not None:
        (tmp_path / "c.toml").write_text(config + '[secrets.ANY]\nfrom = "docker-secret://any"\n')
        args += ["--config", str(tmp_path / "c.toml")]
    result = run_secretinit([*args, "--", "true"], environ)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run"], "Missing argument 'COMMAND...'"),
        (["run", "--timeout", "soon", "--", "true"], "timeout must be a duration"),
        (["run", "--log-format", "xml", "--", "true"], "'xml' is not one of"),
        (["run", "--exec", "--cleanup", "--", "true"], "--cleanup needs the supervisor"),
        (["nope"], "No such command 'nope'"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = run_secretinit(args)
    assert result.returncode == 2
    assert message in result.stderr


def test_symlink_planted_at_a_secret_file_is_replaced(tmp_path: Path) -> None:
    target = tmp_path / "secrets"
    target.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("original")
    (target / "DB_PASSWORD").symlink_to(victim)
    result = run_secretinit(
        ["fetch", "--dir", str(target)],
        {"DB_PASSWORD": "env-file://examples/dev.env#DB_PASSWORD"},
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert victim.read_text() == "original"
    assert not (target / "DB_PASSWORD").is_symlink()
    assert (target / "DB_PASSWORD").read_text() == DEV_VALUE


def test_unwritable_directory_is_a_write_failure(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run_secretinit(
        ["fetch", "--dir", str(blocker / "secrets")],
        {"DB_PASSWORD": "env-file://examples/dev.env#DB_PASSWORD"},
        cwd=ROOT,
    )
    assert result.returncode == 73
    assert (
        f"cannot create secret directory {blocker}/secrets: {blocker} is not a directory"
        in result.stderr
    )


@pytest.mark.usefixtures("unprivileged")
def test_unreadable_env_file_is_reported(shared_dir: Path) -> None:
    # Imported at module level: without root the interpreter's own directory
    # (under /root here) may not be readable for a late import.
    env_file = shared_dir / "locked.env"
    env_file.write_text("K=v\n")
    env_file.chmod(0)
    result = CliRunner().invoke(
        cli, ["check", "--env-file", str(env_file)], env={"K": "docker-secret://k"}
    )
    assert result.exit_code == 69
    assert f"env file {env_file} is not readable: permission denied" in result.stderr


def test_cleanup_removes_the_files_after_the_command(tmp_path: Path) -> None:
    target = tmp_path / "secrets"
    result = run_secretinit(
        [
            "run",
            "--dir",
            str(target),
            "--cleanup",
            "--",
            "sh",
            "-c",
            'test -f "$DB_PASSWORD_FILE" && echo present',
        ],
        {"DB_PASSWORD": "env-file://examples/dev.env#DB_PASSWORD"},
        cwd=ROOT,
    )
    assert result.stdout.strip() == "present"
    assert not target.exists()  # created by this run, so removed with its files


def test_default_directory_is_removed_after_the_command() -> None:
    result = run_secretinit(
        ["run", "--", "sh", "-c", 'echo "$DB_PASSWORD_FILE"'],
        {"DB_PASSWORD": "env-file://examples/dev.env#DB_PASSWORD"},
        cwd=ROOT,
    )
    path = Path(result.stdout.strip())
    if str(path).startswith("/run/secretinit/"):
        pytest.skip("/run is a tmpfs here: the fixed directory is kept")
    assert not path.parent.exists()


def test_json_logs_are_one_record_per_line() -> None:
    result = run_secretinit(
        ["run", "--log-format", "json", "--log-level", "debug", "--", "sh", "-c", "exit 5"],
        {"DB_PASSWORD": "env-file://examples/dev.env#DB_PASSWORD"},
        cwd=ROOT,
    )
    assert result.returncode == 5
    records = [json.loads(line) for line in result.stderr.splitlines()]
    summary = next(r for r in records if r.get("event") == "summary")
    assert summary["secrets"] == 1 and summary["providers"] == {"env-file": 1}
    assert {"time", "level", "logger", "message"} <= set(summary)
    exited = next(r for r in records if r.get("event") == "child_exited")
    assert exited["status"] == 5


def test_stop_signal_during_a_hung_fetch_exits_promptly(tmp_path: Path) -> None:
    fifo = tmp_path / "hang"
    os.mkfifo(fifo)  # reading a FIFO with no writer blocks: a store that never answers
    running = Running(
        ["run", "--timeout", "60", "--", "true"],
        {"SECRETINIT_DOCKER_SECRETS_DIR": str(tmp_path), "HANG": "docker-secret://hang"},
    )
    try:
        time.sleep(1.0)  # let it reach the read; the signal is what is tested, not the timing
        running.send(signal.SIGTERM)
        status, _, stderr = running.wait(timeout=20)
    finally:
        running.kill()
    assert status == 143
    assert "stopped by SIGTERM before the command started" in stderr


def test_version_and_providers() -> None:
    from secretinit import __version__

    result = run_secretinit(["--version"])
    assert result.stdout.strip() == f"secretinit, version {__version__}"
    result = run_secretinit(["providers"])
    lines = result.stdout.splitlines()
    assert any(
        line.startswith("env-file") and f"secretinit {__version__}" in line for line in lines
    )
    assert any(line.startswith("docker-secret") for line in lines)


def test_third_party_provider_through_entry_points(tmp_path: Path) -> None:
    """A provider a third party ships is found through the same entry-point group."""
    (tmp_path / "upper_provider.py").write_text(
        "from secretinit import Provider\n"
        "class Upper(Provider):\n"
        "    def fetch(self, refs, timeout):\n"
        "        return {ref: ref.location.upper().encode() for ref in refs}\n"
    )
    dist = tmp_path / "upper_provider-1.2.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: upper-provider\nVersion: 1.2\n")
    (dist / "entry_points.txt").write_text("[secretinit.providers]\nupper = upper_provider:Upper\n")
    env = {"PYTHONPATH": str(tmp_path), "LOUD": "upper://quiet"}
    result = run_secretinit(["providers"], env)
    assert "upper          upper-provider 1.2  (upper_provider:Upper)" in result.stdout
    result = run_secretinit(["run", "--", "sh", "-c", 'cat "$LOUD_FILE"'], env)
    assert result.stdout == "QUIET", result.stderr


def test_known_provider_not_installed_names_its_distribution(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from secretinit._registry import KNOWN

    monkeypatch.setitem(KNOWN, "fake-store", ("secretinit-fake", "secretinit_fake_absent:Fake"))
    result = CliRunner().invoke(cli, ["run", "--", "true"], env={"X": "fake-store://x"})
    assert result.exit_code == 2
    assert (
        "scheme 'fake-store' is provided by secretinit-fake, which is not installed "
        "(pip install secretinit-fake)" in result.stderr
    )


def test_a_provider_table_with_a_typo_is_warned_about(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[secrets.A]\nfrom = "docker-secret://a"\n[providers.vault]\naddress = "x"\n'
        '[providers.docker-secrets]\ndir = "/x"\n'
    )
    (tmp_path / "a").write_text("x")
    result = run_secretinit(
        ["check", "--config", str(config)], {"SECRETINIT_DOCKER_SECRETS_DIR": str(tmp_path)}
    )
    assert result.returncode == 0, result.stderr
    assert "[providers.docker-secrets] names no provider: a typo?" in result.stderr
    assert "[providers.vault]" not in result.stderr  # a real provider's table, unused here
