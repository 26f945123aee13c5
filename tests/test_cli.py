"""The commands end to end, through the real ``secretinit`` executable."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
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
        'echo "mode $(stat -L -c %a "$DB_PASSWORD_FILE") $(stat -c %a "$dir")"; '
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
    visible = sorted(p.name for p in target.iterdir() if not p.name.startswith(".."))
    assert visible == ["API_TOKEN", "DB_PASSWORD", "tls.key"]
    assert os.readlink(target / "DB_PASSWORD") == "..data/DB_PASSWORD"  # the layout
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
    # The disk warning and the value export fetch cannot give; info is filtered out.
    assert [(r["level"], r["event"]) for r in records] == [
        ("warning", "directory_on_disk"),
        ("warning", "value_not_written"),
    ]


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
    env_file = EXAMPLES / "dev.env"
    assert lines[0].split() == [
        "DB_PASSWORD",
        "vault://secret/app/db#password",  # the declared reference, beside the one used
        "via",
        f"env-file://{env_file}#DB_PASSWORD",
        "->",
        "file",
        "DB_PASSWORD",
        "ok",
        "(19",
        "bytes)",
    ]
    assert "template of DB_PASSWORD" in lines[3] and "export value" in lines[3]
    assert lines[4].startswith(f"directory {tmp_path / 'x'}  ok, but on ")
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
    result = run_secretinit(["check", "--config", str(config), "--dir", str(tmp_path / "d")])
    assert result.returncode == 69
    out = result.stdout
    assert "PRESENT" in out and "ok (1 byte)" in out
    assert f"FAILED: not found: ABSENT is not set in {env_file}" in out
    assert "skipped (optional): not found" in out
    # Each failure once: its reason in the table, only its name in the closing error.
    assert (out + result.stderr).count("ABSENT is not set") == 1
    assert "1 required secret would not resolve (see above): ABSENT" in result.stderr


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
        'ls "$(dirname "$DSN_FILE")"; stat -L -c %a "$DSN_FILE"'
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
            "c.toml:2: [secrets.X] from: no installed provider handles scheme 'nosuch' and none "
            "is known to provide it",
        ),
        (
            {},
            '[secrets."../../etc/passwd"]\nfrom = "docker-secret://x"\n',
            "the name '../../etc/passwd' is not a valid environment variable name",
        ),
        (
            {},
            '[secrets.X]\nfrom = "docker-secret://x"\nfile = "a/b"\n',
            "c.toml:3: [secrets.X] file 'a/b' is not one file name",
        ),
        ({"X": "docker-secret://../x"}, None, "docker secret name '../x' is not valid"),
        ({"X": "env-file://dev.env"}, None, "needs #KEY"),
        ({"X": "docker-secret://x?version=2"}, None, "does not accept option 'version'"),
        (
            {},
            "[providers.docker-secret]\ndri = '/x'\n",
            "c.toml:2: [providers.docker-secret] 'dri' is not an option of docker-secret "
            "(did you mean 'dir'? accepted: dir)",
        ),
        (
            {},
            "[providers.docker-secret]\n\ndir = 3\n",
            "c.toml:3: [providers.docker-secret] dir must be a string",
        ),
        ({"DB": "awssm://prod/db"}, None, "did you mean aws-sm://?"),
        ({"my-key": "docker-secret://x"}, None, "could not read my-key_FILE"),
    ],
)
def test_bad_config_is_a_config_error_without_traceback(
    tmp_path: Path, environ: dict[str, str], config: str | None, message: str
) -> None:
    args = ["run"]
    if config is not None:
        (tmp_path / "c.toml").write_text(config + '[secrets.ANY]\nfrom = "docker-secret://any"\n')
        args += ["--config", "c.toml"]
    result = run_secretinit([*args, "--", "true"], environ, cwd=tmp_path)
    assert result.returncode == 78, result.stderr
    assert "the declared secrets are not valid:" in result.stderr
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
    """Issue 9, item 4: a bad command line is 2, apart from a bad config's 78."""
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
    assert os.readlink(target / "DB_PASSWORD") == "..data/DB_PASSWORD"  # ours, not the planted one
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
    assert result.exit_code == 2
    assert result.stderr == (
        f"secretinit: error: --env-file {env_file}: {env_file} is not readable: permission denied\n"
    )


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


@pytest.fixture
def fake_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """A first-party scheme, ``fake-store``, whose distribution is not installed."""
    from secretinit._registry import KNOWN

    monkeypatch.setitem(KNOWN, "fake-store", ("secretinit-fake", "secretinit_fake_absent:Fake"))


@pytest.mark.usefixtures("fake_store")
def test_known_provider_not_installed_names_its_distribution() -> None:
    result = CliRunner().invoke(cli, ["run", "--", "true"], env={"X": "fake-store://x"})
    assert result.exit_code == 78
    assert (
        "environment variable X: scheme 'fake-store' is provided by secretinit-fake, which is "
        "not installed (from a clone of secretinit: pip install ./providers/fake)" in result.stderr
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
    assert (
        f"{config}:5: [providers.docker-secrets] names no provider: a typo? "
        "(did you mean [providers.docker-secret]?" in result.stderr
    )
    assert "[providers.vault]" not in result.stderr  # a real provider's table, unused here


# --- What a new user trips on (issues 9 and 14) ---


def test_every_problem_of_the_config_at_once_unknown_schemes_included(tmp_path: Path) -> None:
    """Issue 9, item 2: a typo in one table and an unknown scheme in another, both placed."""
    config = tmp_path / "c.toml"
    config.write_text(
        '[secrets.ONE]\nform = "vault://a/b"\n\n[secrets.TWO]\nfrom = "nope://x"\n'
        '\n[secrets.THREE]\nfrom = "vautl://app/db#pw"\n'
    )
    result = run_secretinit(["check", "--config", "c.toml"], cwd=tmp_path)
    assert result.returncode == 78, result.stderr
    assert result.stderr.splitlines() == [
        "secretinit: error: the declared secrets are not valid:",
        "  - c.toml:2: [secrets.ONE] unknown key 'form' (did you mean 'from'?)",
        "  - c.toml:1: [secrets.ONE] needs exactly one of 'from' and 'template'",
        "  - c.toml:5: [secrets.TWO] from: no installed provider handles scheme 'nope' and "
        "none is known to provide it",
        "  - c.toml:8: [secrets.THREE] from: no installed provider handles scheme 'vautl' and "
        "none is known to provide it (did you mean vault://?)",
    ]


def test_a_misspelt_option_is_a_usage_error_before_anything_is_fetched(tmp_path: Path) -> None:
    """Issue 9, item 5: ``--gracee`` used to become the command, after every fetch."""
    fifo = tmp_path / "hang"
    os.mkfifo(fifo)  # a fetch would block on it: a prompt exit proves nothing was fetched
    env = {"SECRETINIT_DOCKER_SECRETS_DIR": str(tmp_path), "HANG": "docker-secret://hang"}
    result = run_secretinit(["run", "--gracee", "5s", "--", "true"], env, timeout=20)
    assert result.returncode == 2
    assert "No such option '--gracee'. Did you mean '--grace'?" in result.stderr
    result = run_secretinit(["run", "-x", "true"], env, timeout=20)
    assert result.returncode == 2
    assert "No such option '-x'" in result.stderr


@pytest.mark.usefixtures("require_root")
@pytest.mark.parametrize("tmpfs", [False, True])
def test_fetch_needs_a_directory_somebody_knows(tmp_path: Path, tmpfs: bool) -> None:
    """Issue 14, item 4: without --dir, fetch wrote into a random /dev/shm directory.

    Run in a mount namespace where /run/secretinit is, or is not, a tmpfs.
    """
    from conftest import secretinit_executable

    disk = tmp_path / "disk"
    disk.mkdir()
    mount = (
        "mount -t tmpfs tmpfs /run/secretinit" if tmpfs else f"mount --bind {disk} /run/secretinit"
    )
    script = f'mkdir -p /run/secretinit && {mount} && exec {secretinit_executable()} fetch "$@"'
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"],
        env={**os.environ, "DB_PASSWORD": "env-file://examples/dev.env#DB_PASSWORD"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if tmpfs:
        assert result.returncode == 0, result.stderr
        assert "resolved 1 secret to /run/secretinit" in result.stderr
    else:
        assert result.returncode == 2
        assert result.stderr.startswith("secretinit: error: fetch needs --dir (or SECRETINIT_DIR")
        assert not list(disk.iterdir())  # nothing fetched, nothing written


def test_fetch_says_a_value_export_is_written_nowhere(tmp_path: Path) -> None:
    """Issue 14, item 4: fetch dropped an export = "value" secret silently."""
    result = run_secretinit(
        [
            "fetch",
            "--dir",
            str(tmp_path / "s"),
            "--config",
            "examples/secretinit.toml",
            "--env-file",
            "examples/dev.env",
        ],
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert (
        'warning: fetch exports no variable, so DATABASE_URL (export = "value", no file) is '
        "written nowhere" in result.stderr
    )


def test_env_file_does_not_hide_errors_of_the_production_config(tmp_path: Path) -> None:
    """Issue 14, item 5: --env-file used to say ok for a vautl:// scheme and a bad option."""
    config = tmp_path / "prod.toml"
    config.write_text(
        '[secrets.A]\nfrom = "vautl://secret/app#a"\n\n'
        '[secrets.B]\nfrom = "vault://secret/app#b?versoin=2"\n\n'
        '[secrets.C]\nfrom = "docker-secret://c"\n\n'
        '[providers.vault]\nrole_id_path = "/x"\n'
    )
    (tmp_path / "dev.env").write_text("A=a\nB=b\nC=c\n")
    result = run_secretinit(
        ["check", "--config", "prod.toml", "--env-file", "dev.env"], cwd=tmp_path
    )
    assert result.returncode == 78, result.stderr
    problems = result.stderr.splitlines()[1:]
    assert problems[0] == (
        "  - prod.toml:2: [secrets.A] from: no installed provider handles scheme 'vautl' and "
        "none is known to provide it (did you mean vault://?)"
    )
    assert problems[1].startswith(
        "  - prod.toml:5: [secrets.B] from: vault://secret/app#b?versoin=2: vault does not "
        "accept option 'versoin' (did you mean 'version'?"
    )
    assert problems[2].startswith(
        "  - prod.toml:11: [providers.vault] 'role_id_path' is not an option of vault "
        "(did you mean 'role_id"
    )
    assert len(problems) == 3
    config.write_text(config.read_text().replace("vautl", "vault").replace("versoin", "version"))
    config.write_text(config.read_text().replace("role_id_path", "role_id_file"))
    result = run_secretinit(
        ["check", "--config", "prod.toml", "--env-file", "dev.env", "--dir", "out"], cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert f"vault://secret/app#a via env-file://{tmp_path}/dev.env#A" in result.stdout


@pytest.mark.usefixtures("fake_store")
def test_env_file_needs_no_provider_of_the_production_stores(tmp_path: Path) -> None:
    """Issue 14, item 5: a declared store whose provider is not installed here is fine."""
    env_file = tmp_path / "dev.env"
    env_file.write_text("X=x-value\n")
    result = CliRunner().invoke(
        cli,
        ["check", "--env-file", str(env_file), "--dir", str(tmp_path / "d")],
        env={"X": "fake-store://x?any-option=1"},
    )
    assert result.exit_code == 0, result.stderr
    assert f"fake-store://x?any-option=1 via env-file://{env_file}#X" in result.stdout
    assert (
        "info: 1 fake-store:// reference not checked: secretinit-fake is not installed here"
        in result.stderr
    )


@pytest.mark.parametrize("by_variable", [False, True])
def test_a_wrong_env_file_path_is_one_usage_line(tmp_path: Path, by_variable: bool) -> None:
    """Issue 14, item 8: it was one fetch failure per secret, status 69, a relative path."""
    env = {"A": "docker-secret://a", "B": "docker-secret://b"}
    args = ["check"]
    if by_variable:
        env["SECRETINIT_ENV_FILE"] = "nope.env"
        given = "SECRETINIT_ENV_FILE=nope.env"
    else:
        args += ["--env-file", "nope.env"]
        given = "--env-file nope.env"
    result = run_secretinit(args, env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == f"secretinit: error: {given}: {tmp_path}/nope.env does not exist\n"


def test_a_relative_env_file_reference_is_reported_resolved(tmp_path: Path) -> None:
    result = run_secretinit(
        ["check", "--dir", "d"], {"A": "env-file://missing.env#A"}, cwd=tmp_path
    )
    assert result.returncode == 69
    assert f"env file {tmp_path}/missing.env does not exist" in result.stdout


def test_provider_option_problems_are_placed_at_their_key(tmp_path: Path) -> None:
    """Issue 14, item 10: a provider's own problems, under the config header, at the key."""
    config = tmp_path / "c.toml"
    config.write_text(
        '[secrets.DB]\nfrom = "vault://secret/app#db"\n\n'
        '[providers.vault]\naddress = "http://127.0.0.1:1"\nauth = "app-role"\n'
    )
    home = tmp_path / "home"
    home.mkdir()
    result = run_secretinit(
        ["check", "--config", "c.toml"],
        {"HOME": str(home), "VAULT_TOKEN": "", "VAULT_ADDR": ""},
        cwd=tmp_path,
    )
    assert result.returncode == 78, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == "secretinit: error: the declared secrets are not valid:"
    assert any(
        line.startswith(
            "  - c.toml:6: [providers.vault] auth: 'app-role' is not a login method "
            "(did you mean 'approle'?"
        )
        for line in lines
    ), result.stderr
    assert sum(line.startswith("  - ") for line in lines) == 1  # no "no Vault token" besides


def test_failures_of_one_cause_are_reported_once(tmp_path: Path) -> None:
    """Issue 14, items 11 and 15: one line per cause in text; fields per failure in JSON."""
    env = {name: f"env-file://gone.env#{name}" for name in ("A", "B", "C")}
    result = run_secretinit(["fetch", "--dir", "out"], env, cwd=tmp_path)
    assert result.returncode == 69
    assert result.stderr.splitlines()[-2:] == [
        "secretinit: error: 3 required secrets could not be resolved:",
        f"  - 3 secrets (A, B, C): not found: env file {tmp_path}/gone.env does not exist",
    ]
    result = run_secretinit(["fetch", "--dir", "out", "--log-format", "json"], env, cwd=tmp_path)
    record = json.loads(result.stderr.splitlines()[-1])
    reason = f"env file {tmp_path}/gone.env does not exist"
    assert record["failures"][0] == {
        "name": "A",
        "reference": "env-file://gone.env#A",
        "source": "environment variable A",
        "kind": "not found",
        "reason": reason,
    }
    assert record["causes"] == [{"kind": "not found", "reason": reason, "secrets": ["A", "B", "C"]}]


def test_config_problems_are_fields_in_json(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text("[secret.A]\nfrom = 'docker-secret://a'\n")
    result = run_secretinit(["check", "--config", "c.toml", "--log-format", "json"], cwd=tmp_path)
    assert result.returncode == 78
    record = json.loads(result.stderr)
    assert record["event"] == "config_error"
    assert record["problems"] == [
        "c.toml:1: unknown table [secret] (did you mean [secrets]?); the tables are "
        "[defaults], [secrets], [providers]"
    ]


def test_check_says_when_the_directory_cannot_be_used(tmp_path: Path) -> None:
    """Issue 14, item 14: ``check --dir /proc/nope`` said ok where fetch failed with 73."""
    env = {"DB_PASSWORD": "env-file://examples/dev.env#DB_PASSWORD"}
    fetched = run_secretinit(["fetch", "--dir", "/proc/nope"], env, cwd=ROOT)
    checked = run_secretinit(["check", "--dir", "/proc/nope"], env, cwd=ROOT)
    assert fetched.returncode == checked.returncode == 73
    reason = "cannot create secret directory /proc/nope: No such file or directory"
    assert f"secretinit: error: {reason}" in fetched.stderr
    assert checked.stdout.splitlines()[-1] == f"directory /proc/nope  FAILED: {reason}"
    assert checked.stderr == f"secretinit: error: {reason}\n"
    blocker = tmp_path / "file"
    blocker.write_text("x")
    checked = run_secretinit(["check", "--dir", str(blocker)], env, cwd=ROOT)
    assert checked.returncode == 73
    assert f"cannot use secret directory {blocker}: it is not a directory" in checked.stdout


def test_help_texts_say_what_the_commands_do() -> None:
    """Issue 14, item 14: help and README disagreed; nothing explained references."""
    runner = CliRunner()
    top = runner.invoke(cli, ["--help"]).output
    assert "DB_PASSWORD=vault://secret/app/db#password" in top
    for scheme in ("env-file", "docker-secret", "vault", "aws-sm", "aws-ssm", "azure-kv"):
        assert f"  {scheme} " in top
    fetch_help = " ".join(runner.invoke(cli, ["fetch", "--help"]).output.split())
    assert "run the command" not in fetch_help
    assert "Write the files (and make the directory) for this user" in fetch_help
    check_help = " ".join(runner.invoke(cli, ["check", "--help"]).output.split())
    assert "2 bad command line; 78 bad config or reference; 69 a required secret" in check_help
    assert "73 the directory could not be used" in check_help


def test_exec_without_secrets_does_not_claim_to_supervise() -> None:
    result = run_secretinit(["run", "--", "true"], {"SECRETINIT_EXEC": "1"})
    assert result.returncode == 0, result.stderr
    assert "no secrets declared: running the command only" in result.stderr
    assert "supervising" not in result.stderr


def test_a_user_of_the_config_is_a_config_problem_at_its_line(tmp_path: Path) -> None:
    """A bad --user is a bad command line (2); the same in [defaults] is a config problem (78)."""
    (tmp_path / "c.toml").write_text(
        '[defaults]\nuser = "no-such-user-xyz"\ngroup = "no-such-group-xyz"\n'
        '[secrets.A]\nfrom = "docker-secret://a"\n'
    )
    result = run_secretinit(["check", "--config", "c.toml"], cwd=tmp_path)
    assert result.returncode == 78, result.stderr
    assert "c.toml:2: [defaults] user 'no-such-user-xyz': no user named" in result.stderr
    result = run_secretinit(["run", "--user", "no-such-user-xyz", "--", "true"], cwd=tmp_path)
    assert result.returncode == 2
    (tmp_path / "c.toml").write_text('[defaults]\ngroup = "no-such-group-xyz"\n')
    result = run_secretinit(["check", "--config", "c.toml"], cwd=tmp_path)
    assert result.returncode == 78, result.stderr
    assert "c.toml:2: [defaults] group: no group named 'no-such-group-xyz'" in result.stderr
