"""``--refresh`` on real processes: the stores built in, every ``--on-change`` action,
failures, a stop during a refresh, the sidecar, ``status``, PID 1, the provider hooks.

The application is ``tests/programs/secret_reader.py``: it prints digests of
its files at start and on each SIGHUP, never a value. secretinit logs JSON at
debug level into a file that each test reads as it grows.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import assert_no_leak, run_secretinit, secretinit_executable
from tests.processes import Running, descendants, uids_of, zombies_of
from tests.refreshing import (
    LogFile,
    digest,
    files_line,
    generations,
    refreshing,
    wait_until,
)

NOBODY = 65534


@pytest.fixture
def log(refresh_log: LogFile) -> LogFile:
    return refresh_log


def rewrite_in_place(path: Path, text: str) -> None:
    """Change a file as an editor that truncates and writes does: same inode."""
    with open(path, "r+") as stream:
        stream.seek(0)
        stream.truncate()
        stream.write(text)


def write_values(env_file: Path, **values: str) -> None:
    """Give the .env file these values, in place (see rewrite_in_place)."""
    text = "".join(f"{name}={value}\n" for name, value in values.items())
    if env_file.exists():
        rewrite_in_place(env_file, text)
    else:
        env_file.write_text(text)


def env_file_series(
    tmp_path: Path,
    secrets_dir: Path,
    log: LogFile,
    action: str,
    values: dict[str, str],
    pid_namespace: bool = False,
) -> tuple[Running, Path]:
    """``run --refresh 1 --on-change ACTION`` of the reader app, its secrets in a .env file."""
    env_file = tmp_path / "dev.env"
    write_values(env_file, **values)
    env = {name: f"env-file://{env_file}#{name}" for name in values}
    options = ["--dir", str(secrets_dir), "--refresh", "1", "--on-change", action]
    running = refreshing(options, env, list(values), log, pid_namespace=pid_namespace)
    return running, env_file


def event(line: str) -> dict[str, object]:
    record: dict[str, object] = json.loads(line)
    return record


def test_an_env_file_edited_in_place_reaches_the_application(
    tmp_path: Path, secrets_dir: Path, log: LogFile
) -> None:
    values = {"A": "canary-a1-7f3e", "B": "canary-b1-2c9d"}
    running, env_file = env_file_series(tmp_path, secrets_dir, log, "signal:HUP", values)
    try:
        running.expect("started")
        assert running.expect("files") == files_line(A="canary-a1-7f3e", B="canary-b1-2c9d")
        first = os.readlink(secrets_dir / "..data")
        unchanged = event(log.wait_for('"event": "refresh_unchanged"'))
        assert unchanged["secrets"] == 2
        assert os.readlink(secrets_dir / "..data") == first  # nothing changed: nothing written
        write_values(env_file, A="canary-a2-8e4f", B="canary-b1-2c9d")
        assert running.expect("SIGHUP") == "SIGHUP"
        assert running.expect("files") == files_line(A="canary-a2-8e4f", B="canary-b1-2c9d")
        changed = event(log.wait_for('"event": "refresh_changed"'))
        assert changed["changed"] == ["A"]
        assert changed["changed_count"] == 1
        assert changed["secrets"] == 2
        assert isinstance(changed["next_refresh_in"], float) and changed["next_refresh_in"] <= 1
        assert str(changed["next_refresh"]).endswith("Z")
        assert event(log.wait_for('"event": "on_change"'))["action"] == "signal:HUP"
        # The replaced generation goes a moment later; the files keep their modes.
        wait_until(lambda: len(generations(secrets_dir)) == 1, what="the old generation to go")
        assert os.readlink(secrets_dir / "..data") != first
        assert stat.S_IMODE((secrets_dir / "A").stat().st_mode) == 0o400
        running.send(signal.SIGTERM)
        assert running.expect("stopping") == "stopping"
        status, _, _ = running.wait()
    finally:
        running.kill()
    assert status == 0
    assert_no_leak(
        ["canary-a1-7f3e", "canary-a2-8e4f", "canary-b1-2c9d"], log.text(), "\n".join(running.lines)
    )


def test_restart_runs_the_command_again_with_the_new_files_and_values(
    tmp_path: Path, secrets_dir: Path, log: LogFile
) -> None:
    env_file = tmp_path / "dev.env"
    env_file.write_text("PW=canary-pw1-61ab\n")
    config = tmp_path / "secretinit.toml"
    config.write_text(
        f'[secrets.PW]\nfrom = "env-file://{env_file}#PW"\n'
        '[secrets.URL]\ntemplate = "db://app:${PW}@db/app"\nexport = "value"\n'
        '[defaults]\nrefresh = "1s"\non_change = "restart"\n'
    )
    running = refreshing(
        ["--config", str(config), "--dir", str(secrets_dir), "--grace", "5"], {}, ["PW", "URL"], log
    )
    try:
        first = running.expect("started").split()[1]
        url = digest("db://app:canary-pw1-61ab@db/app")
        assert running.expect("files") == f"{files_line(PW='canary-pw1-61ab')} URL=env:{url}"
        rewrite_in_place(env_file, "PW=canary-pw2-73cd\n")
        assert running.expect("stopping") == "stopping"
        second = running.expect("started").split()[1]
        assert second != first
        url = digest("db://app:canary-pw2-73cd@db/app")
        assert running.expect("files") == f"{files_line(PW='canary-pw2-73cd')} URL=env:{url}"
        changed = event(log.wait_for('"event": "refresh_changed"'))
        assert changed["changed"] == ["PW", "URL"]
        assert event(log.wait_for('"event": "on_change"'))["action"] == "restart"
        log.wait_for('"event": "child_restarted"')
        running.send(signal.SIGTERM)
        status, _, _ = running.wait()
    finally:
        running.kill()
    assert status == 0
    assert_no_leak(["canary-pw1-61ab", "canary-pw2-73cd"], log.text(), "\n".join(running.lines))
    # What the refreshes kept for the next restart is private, and gone once read.
    assert not (secrets_dir / "..secretinit" / "environ").exists()


def test_exit_stops_the_command_and_exits_75(
    tmp_path: Path, secrets_dir: Path, log: LogFile
) -> None:
    values = {"A": "canary-x1-0a0a"}
    running, env_file = env_file_series(tmp_path, secrets_dir, log, "exit", values)
    try:
        running.expect("files")
        write_values(env_file, A="canary-x2-0b0b")
        assert running.expect("stopping") == "stopping"
        status, _, _ = running.wait()
    finally:
        running.kill()
    assert status == 75
    assert "(--on-change exit, status 75)" in log.text()
    assert (secrets_dir / "A").read_text() == "canary-x2-0b0b"  # the files stay for the next start


def test_a_failed_refresh_keeps_the_files_is_retried_and_recovers(
    tmp_path: Path, secrets_dir: Path, log: LogFile
) -> None:
    values = {"A": "canary-f1-4d4d"}
    running, env_file = env_file_series(tmp_path, secrets_dir, log, "signal:HUP", values)
    try:
        running.expect("files")
        write_values(env_file, OTHER="x")  # A disappeared from the store
        failure = event(log.wait_for('"event": "secrets_unavailable"'))
        assert "A (env-file://" in str(failure["message"])
        assert "the last good files stay" in str(failure["message"])
        retry = event(log.wait_for('"event": "refresh_failed"'))
        assert retry["status"] == 69
        assert "keeping the last good files; retrying in" in str(retry["message"])
        assert event(log.wait_for('"event": "refresh_failed"'))["failures"] == 2  # again
        assert (secrets_dir / "A").read_text() == "canary-f1-4d4d"
        status = run_secretinit(["status", "--dir", str(secrets_dir), "--max-age", "30s"])
        assert status.returncode == 0, status.stdout
        assert "failed since: A" in status.stdout
        # Two periods of failures: more than --max-age 1s, and soon more than the default 3x.
        status = run_secretinit(["status", "--dir", str(secrets_dir), "--max-age", "1s"])
        assert status.returncode == 1
        assert status.stdout.startswith("unhealthy: last success ")
        write_values(env_file, A="canary-f2-5e5e")
        assert running.expect("SIGHUP") == "SIGHUP"
        assert running.expect("files") == files_line(A="canary-f2-5e5e")
        log.wait_for('"event": "refresh_changed"')
        status = run_secretinit(["status", "--dir", str(secrets_dir), "--max-age", "5s"])
        assert status.returncode == 0
        assert "failed" not in status.stdout
        running.send(signal.SIGTERM)
        running.wait()
    finally:
        running.kill()
    assert_no_leak(["canary-f1-4d4d", "canary-f2-5e5e"], log.text(), "\n".join(running.lines))


def test_sigterm_during_a_refresh_stops_it_cleanly(
    tmp_path: Path, secrets_dir: Path, log: LogFile
) -> None:
    store = tmp_path / "run-secrets"
    store.mkdir()
    (store / "token").write_text("canary-t1-9a9a")
    env = {"TOKEN": "docker-secret://token", "SECRETINIT_DOCKER_SECRETS_DIR": str(store)}
    options = ["--dir", str(secrets_dir), "--refresh", "1", "--timeout", "60"]
    running = refreshing(options, env, ["TOKEN"], log)
    try:
        running.expect("files")
        log.wait_for('"event": "refresh_unchanged"')
        os.mkfifo(tmp_path / "fifo")  # reading it blocks: a store that never answers
        os.rename(tmp_path / "fifo", store / "token")
        hung = event(log.wait_for('"event": "refresh_started"'))
        time.sleep(1.0)  # let it reach the read
        before = time.monotonic()
        running.send(signal.SIGTERM)
        status, _, _ = running.wait()
        elapsed = time.monotonic() - before
    finally:
        running.kill()
    assert status == 0  # the application's own status after SIGTERM
    assert elapsed < 5  # the run stopped at once, not after the supervisor's 5 s
    assert '"event": "refresh_killed"' not in log.text()
    assert not Path(f"/proc/{hung['pid']}").exists()
    assert generations(secrets_dir) == [os.readlink(secrets_dir / "..data")]
    assert not [p for p in secrets_dir.iterdir() if p.name.startswith(".secretinit-")]
    assert (secrets_dir / "TOKEN").read_text() == "canary-t1-9a9a"


@pytest.mark.usefixtures("require_root")
def test_refresh_as_pid_1(tmp_path: Path, secrets_dir: Path, log: LogFile) -> None:
    values = {"A": "canary-p1-1111"}
    running, env_file = env_file_series(
        tmp_path, secrets_dir, log, "signal:HUP", values, pid_namespace=True
    )
    try:
        running.expect("started")
        status_lines = Path(f"/proc/{running.pid}/status").read_text().splitlines()
        assert next(line for line in status_lines if line.startswith("NSpid:")).endswith("\t1")
        running.expect("files")
        write_values(env_file, A="canary-p2-2222")
        assert running.expect("SIGHUP") == "SIGHUP"
        assert running.expect("files") == files_line(A="canary-p2-2222")
        log.wait_for('"event": "refresh_unchanged"')
        assert zombies_of(running.pid) == []  # every refresh run was reaped
        running.send(signal.SIGTERM)
        status, _, _ = running.wait()
    finally:
        running.kill()
    assert status == 0


def start_sidecar(secrets_dir: Path, env_file: Path, log: LogFile, *options: str) -> Running:
    """``fetch --refresh 1`` of secret A from ``env_file``, logging JSON into ``log``."""
    return Running(
        ["fetch", "--dir", str(secrets_dir), "--refresh", "1", "--log-format", "json", *options],
        {"A": f"env-file://{env_file}#A"},
        stderr=log.stream,
    )


def test_fetch_refresh_is_a_sidecar_with_a_health_check(
    tmp_path: Path, secrets_dir: Path, log: LogFile
) -> None:
    env_file = tmp_path / "dev.env"
    write_values(env_file, A="canary-s1-3333")
    sidecar = start_sidecar(secrets_dir, env_file, log)
    try:
        log.wait_for('"event": "summary"')
        probe = subprocess.run(
            [secretinit_executable(), "status", f"--dir={secrets_dir}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert probe.returncode == 0, probe.stdout + probe.stderr
        assert probe.stdout.startswith("ready: last success ")
        assert "refreshed every 1 s" in probe.stdout
        cmdline = Path(f"/proc/{sidecar.pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[4].endswith(b"secretinit/_supervisor_main.py")  # the lean process stays
        write_values(env_file, A="canary-s2-4444")
        wait_until(lambda: (secrets_dir / "A").read_text() == "canary-s2-4444", what="the change")
        before = time.monotonic()
        sidecar.send(signal.SIGTERM)
        status, _, _ = sidecar.wait()
        assert time.monotonic() - before < 5
    finally:
        sidecar.kill()
    assert status == 0
    assert '"event": "refresh_changed"' in log.text()
    assert_no_leak(["canary-s1-3333", "canary-s2-4444"], log.text())


def runnable_by_nobody(program: str) -> bool:
    """Whether ``nobody`` can reach and run ``program`` (not under a private /root)."""
    path = Path(os.path.realpath(program))
    return bool(path.stat().st_mode & 0o001) and all(
        parent.stat().st_mode & 0o001 for parent in path.parents
    )


@pytest.mark.usefixtures("require_root")
def test_refreshes_run_as_the_user(shared_dir: Path, secrets_dir: Path, log: LogFile) -> None:
    env_file = shared_dir / "dev.env"  # the user must read it, as the refreshes run as it
    write_values(env_file, A="canary-u1-5555")
    env_file.chmod(0o644)
    sidecar = start_sidecar(secrets_dir, env_file, log, "--user", "nobody")
    try:
        log.wait_for('"event": "summary"')
        assert (secrets_dir / "A").stat().st_uid == NOBODY
        wait_until(lambda: uids_of(sidecar.pid) == (NOBODY, NOBODY), what="dropping root")
        if runnable_by_nobody(sys.executable):
            write_values(env_file, A="canary-u2-6666")
            log.wait_for('"event": "refresh_changed"')
            assert (secrets_dir / "A").read_text() == "canary-u2-6666"
            assert (secrets_dir / "..secretinit" / "health").stat().st_uid == NOBODY
        else:  # this interpreter lives where nobody may not go: said, and tried again
            log.wait_for("cannot start a refresh: Permission denied")
            log.wait_for("cannot start a refresh: Permission denied")
            assert (secrets_dir / "A").read_text() == "canary-u1-5555"
        sidecar.send(signal.SIGTERM)
        status, _, _ = sidecar.wait()
    finally:
        sidecar.kill()
    assert status == 0


COUNTER_PROVIDER = """
from secretinit import Expired, Provider

TOKEN = "counter-token-canary-5d1e"


class Counter(Provider):
    config_options = frozenset({"expire_after"})

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.count = 0
        self.restored = None

    def restore_state(self, state):
        self.restored = dict(state)
        self.count = state.get("count", 0)

    def fetch(self, refs, timeout):
        self.count += 1
        limit = self.options.get("expire_after")
        if limit is not None and self.count > limit:
            return dict.fromkeys(refs, Expired("the lease ran out and no new one can be had"))
        return {ref: f"counter-value-{self.count}".encode() for ref in refs}

    def save_state(self):
        return {"count": self.count, "token": TOKEN, "refreshing": self.refreshing,
                "restored": self.restored is not None}

    def refresh_within(self):
        return 1.0

    def release(self):
        import os

        with open(os.environ["COUNTER_RELEASED"], "a") as stream:
            stream.write(f"released after {self.count} fetches\\n")
"""


@pytest.fixture
def counter_provider(tmp_path: Path) -> dict[str, str]:
    """A third-party provider found through PYTHONPATH that keeps state and asks for refreshes."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "counter_provider.py").write_text(COUNTER_PROVIDER)
    dist = plugins / "counter_provider-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: counter-provider\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[secretinit.providers]\ncounter = counter_provider:Counter\n"
    )
    released = tmp_path / "released"
    return {"PYTHONPATH": str(plugins), "C": "counter://x", "COUNTER_RELEASED": str(released)}


def test_providers_keep_state_between_runs_and_ask_for_sooner_refreshes(
    counter_provider: dict[str, str], secrets_dir: Path, log: LogFile
) -> None:
    # The period is a minute; the provider asks for a refresh within 1 s.
    options = ["--dir", str(secrets_dir), "--refresh", "60", "--on-change", "signal:HUP"]
    running = refreshing(options, counter_provider, ["C"], log)
    try:
        assert running.expect("files") == files_line(C="counter-value-1")
        assert running.expect("SIGHUP") == "SIGHUP"
        assert running.expect("files") == files_line(C="counter-value-2")
        state_dir = secrets_dir / "..secretinit"
        saved = json.loads((state_dir / "providers.json").read_text())["counter"]
        assert saved["refreshing"] is True and saved["restored"] is True
        assert saved["count"] >= 2
        assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
        for name in ("providers.json", "start.json", "health"):
            assert stat.S_IMODE((state_dir / name).stat().st_mode) == 0o600
        supervisor = Path(f"/proc/{running.pid}")
        child = (supervisor / "task" / str(running.pid) / "children").read_text().split()[0]
        running.send(signal.SIGTERM)
        exposed = [
            (supervisor / "cmdline").read_bytes(),
            (supervisor / "environ").read_bytes(),
            Path(f"/proc/{child}/environ").read_bytes(),
        ]
        running.wait()
    finally:
        running.kill()
    # What a provider keeps is a credential: never in a log, argv or environment.
    assert_no_leak(["counter-token-canary-5d1e"], log.text(), *exposed)


@pytest.mark.parametrize("action", ["exit", "signal:HUP"])
def test_a_credential_that_expired_and_cannot_be_replaced(
    counter_provider: dict[str, str], tmp_path: Path, secrets_dir: Path, log: LogFile, action: str
) -> None:
    config = tmp_path / "secretinit.toml"
    config.write_text("[providers.counter]\nexpire_after = 1\n")
    options = ["--config", str(config), "--dir", str(secrets_dir), "--refresh", "60"]
    running = refreshing([*options, "--on-change", action], counter_provider, ["C"], log)
    try:
        running.expect("files")
        expired = event(log.wait_for('"event": "credential_expired"'))
        assert expired["status"] == 77
        if action == "exit":
            assert running.expect("stopping") == "stopping"
            status, _, _ = running.wait()
            assert status == 77
        else:  # the command keeps running on the last files; the refreshes go on
            assert event(log.wait_for('"event": "credential_expired"'))["failures"] == 2
            running.send(signal.SIGTERM)
            status, _, _ = running.wait()
            assert status == 0
    finally:
        running.kill()
    assert "the lease ran out" in log.text()
    assert (secrets_dir / "C").read_text() == "counter-value-1"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--refresh", "0.5", "--", "true"], "refresh must be at least 1s"),
        (["run", "--refresh", "soon", "--", "true"], "must be a duration"),
        (["run", "--refresh", "5", "--exec", "--", "true"], "cannot be used with --exec"),
        (["run", "--refresh", "5", "--on-change", "reload", "--", "true"], "is not an action"),
        (["run", "--on-change", "signal:NOPE", "--", "true"], "names no signal"),
        (["fetch", "--refresh", "0"], "refresh must be at least 1s"),
        (["status"], "give --dir"),
        (["status", "--dir", "/nowhere", "--bogus"], "unknown argument '--bogus'"),
    ],
)
def test_refresh_options_are_checked(args: list[str], message: str) -> None:
    result = run_secretinit(args, {"A": "env-file://examples/dev.env#DB_PASSWORD"})
    assert result.returncode == 2, result.stderr
    assert message in result.stderr


def test_refresh_settings_in_the_config_are_checked(tmp_path: Path) -> None:
    config = tmp_path / "secretinit.toml"
    config.write_text('[defaults]\nrefresh = "0s"\non_change = "reboot"\n')
    result = run_secretinit(["run", "--config", str(config), "--", "true"])
    assert result.returncode == 78  # EX_CONFIG: a bad config, not a bad command line
    assert "[defaults] refresh must be at least 1s" in result.stderr
    assert "[defaults] on_change: 'reboot' is not an action" in result.stderr


def test_on_change_without_refresh_is_warned_about() -> None:
    result = run_secretinit(["run", "--on-change", "restart", "--", "true"])
    assert result.returncode == 0
    assert "--on-change does nothing without --refresh" in result.stderr


def test_status_of_a_directory_written_once(tmp_path: Path, secrets_dir: Path) -> None:
    assert run_secretinit(["status", "--dir", str(secrets_dir)]).returncode == 1
    env = {"A": "env-file://examples/dev.env#DB_PASSWORD"}
    from conftest import ROOT

    assert run_secretinit(["fetch", "--dir", str(secrets_dir)], env, cwd=ROOT).returncode == 0
    ready = run_secretinit(["status"], {"SECRETINIT_DIR": str(secrets_dir)})
    assert ready.returncode == 0
    assert ready.stdout.startswith("ready: last success ") and "written once" in ready.stdout
    periods = run_secretinit(["status", "--dir", str(secrets_dir), "--max-age", "3x"])
    assert periods.returncode == 2
    assert "this directory is not refreshed: give a duration" in periods.stderr
    time.sleep(1.1)
    stale = run_secretinit(["status", "--dir", str(secrets_dir), "--max-age", "1"])
    assert stale.returncode == 1
    assert stale.stdout.startswith("unhealthy")


def test_cleanup_removes_the_layout_and_the_state(tmp_path: Path, secrets_dir: Path) -> None:
    env_file = tmp_path / "dev.env"
    env_file.write_text("A=canary-c1-6666\n")
    result = run_secretinit(
        [
            "run",
            "--dir",
            str(secrets_dir),
            "--refresh",
            "1",
            "--cleanup",
            "--",
            "sh",
            "-c",
            'test -f "$A_FILE" && echo present; sleep 1.5',
        ],
        {"A": f"env-file://{env_file}#A"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "present"
    assert not secrets_dir.exists()  # made by this run: removed with its layout and state


def test_status_through_the_cli_module(tmp_path: Path, secrets_dir: Path) -> None:
    """``secretinit._cli`` has ``status`` too (for --help, and for an entry point that skips
    ``__main__``), with the same verdicts."""
    from click.testing import CliRunner

    from secretinit._cli import cli

    missing = CliRunner().invoke(cli, ["status", "--dir", str(secrets_dir)])
    assert missing.exit_code == 1
    assert "holds no secrets yet" in missing.stdout
    assert CliRunner().invoke(cli, ["status"], env={"SECRETINIT_DIR": None}).exit_code == 2
    env_file = tmp_path / "dev.env"
    env_file.write_text("A=canary-cli-7777\n")
    fetched = run_secretinit(
        ["fetch", "--dir", str(secrets_dir)], {"A": f"env-file://{env_file}#A"}
    )
    assert fetched.returncode == 0, fetched.stderr
    ready = CliRunner().invoke(cli, ["status", "--dir", str(secrets_dir)])
    assert ready.exit_code == 0
    assert ready.stdout.startswith("ready: last success")
    bad = CliRunner().invoke(cli, ["status", "--dir", str(secrets_dir), "--max-age", "soon"])
    assert bad.exit_code == 2
    assert "--max-age soon: expected a duration (90s, 5m) or a number of periods (3x)" in bad.stderr


def test_changes_within_the_debounce_window_make_one_action(
    tmp_path: Path, secrets_dir: Path, log: LogFile
) -> None:
    values = {"A": "canary-d1-aaaa", "B": "canary-d1-bbbb", "C": "canary-d1-cccc"}
    running, env_file = env_file_series(tmp_path, secrets_dir, log, "signal:HUP", values)
    final = files_line(A="canary-d2-aaaa", B="canary-d2-bbbb", C="canary-d2-cccc")
    try:
        running.expect("files")
        write_values(env_file, **{**values, "A": "canary-d2-aaaa"})
        assert running.expect("SIGHUP") == "SIGHUP"  # the first change acts at once
        # Two more changes, found by two refreshes, soon after the action.
        write_values(env_file, **{**values, "A": "canary-d2-aaaa", "B": "canary-d2-bbbb"})
        log.wait_for('"changed": ["B"]')
        write_values(env_file, A="canary-d2-aaaa", B="canary-d2-bbbb", C="canary-d2-cccc")
        while running.expect("files") != final:
            running.expect("SIGHUP")
        running.send(signal.SIGTERM)
        running.wait()
    finally:
        running.kill()
    records = [json.loads(line) for line in log.text().splitlines()]
    changes = [r for r in records if r.get("event") == "refresh_changed"]
    actions = [r for r in records if r.get("event") == "on_change"]
    assert [c["changed"] for c in changes] == [["A"], ["B"], ["C"]]
    assert actions[0]["changed"] == ["A"]
    # Each later action comes 5 s after the one before, with every change found meanwhile.
    # (B and C, found about a second apart, normally make one action; on a slow
    # machine C may come after the window, and then makes the next one.)
    for before, action in itertools.pairwise(actions):
        assert seconds(action["time"]) - seconds(before["time"]) >= 4.9
        found = [c for c in changes if before["time"] < c["time"] <= action["time"]]
        assert action["changed"] == [name for c in found for name in c["changed"]]


def seconds(stamp: object) -> float:
    """Seconds of a log record's ``time`` (UTC, ISO 8601 with milliseconds)."""
    import datetime

    text = str(stamp).replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(text).timestamp()


def test_a_restarted_command_gets_the_terminal_foreground(tmp_path: Path) -> None:
    """Under ``docker run -it``, the command started again must still read the terminal."""
    import pty
    import select

    env_file = tmp_path / "dev.env"
    write_values(env_file, A="canary-tty1-8888")
    script = 'echo "prompt $(cat "$A_FILE" | wc -c)"; read line; echo "got-$line"; sleep 60'
    pid, master = pty.fork()
    if pid == 0:  # the child: become secretinit on the new terminal
        os.environ["A"] = f"env-file://{env_file}#A"
        argv = [secretinit_executable(), "run", "--refresh", "1", "--on-change", "restart"]
        os.execv(argv[0], [*argv, "--grace", "1", "--", "sh", "-c", script])
    output = b""

    def read_until(needle: bytes) -> None:
        nonlocal output
        deadline = time.monotonic() + 30
        while needle not in output:
            assert time.monotonic() < deadline, output
            if select.select([master], [], [], 0.2)[0]:
                output += os.read(master, 4096)

    try:
        read_until(b"prompt 16")
        os.write(master, b"one\n")
        read_until(b"got-one")
        write_values(env_file, A="canary-tty2-88889")  # the restart: one byte longer
        read_until(b"prompt 17")
        os.write(master, b"two\n")
        read_until(b"got-two")  # read: the new command has the terminal
    finally:
        for stray in [*descendants(pid), pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(stray, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(master)


# The supervisor of a refresh series, run directly with its own stop deadline
# shortened from OWN_STOP_GRACE (10 s) to 1 s in that process alone: the code
# path is the one a --grace-less series takes, without a knob in production.
SHORT_OWN_STOP = """
import sys
sys.path.insert(0, sys.argv.pop(1))
import _supervisor
_supervisor.OWN_STOP_GRACE = 1.0
_supervisor.main(sys.argv[1:])
"""


@pytest.mark.parametrize(("action", "expected"), [("exit", 75), ("restart", None)])
def test_an_own_stop_without_grace_kills_a_command_that_ignores_sigterm(
    tmp_path: Path, secrets_dir: Path, log: LogFile, action: str, expected: int | None
) -> None:
    from secretinit import _supervisor

    env_file = tmp_path / "dev.env"
    write_values(env_file, A="canary-g1-0c0c")
    env = {"A": f"env-file://{env_file}#A"}
    # A series whose command ends at once leaves its start record for the runs.
    started = run_secretinit(
        ["run", "--dir", str(secrets_dir), "--refresh", "60", "--", "true"], env
    )
    assert started.returncode == 0, started.stderr
    supervisor = [
        sys.executable,
        "-I",
        "-S",
        "-B",
        "-c",
        SHORT_OWN_STOP,
        os.path.dirname(_supervisor.__file__),
        *["--log-format", "json", "--log-level", "debug", "--refresh", "1"],
        *["--refresh-dir", str(secrets_dir), "--on-change", action],
        *["--", sys.executable, str(Path(__file__).parent / "programs" / "signal_child.py")],
        "ignore-term",
    ]
    with subprocess.Popen(
        supervisor, stdout=subprocess.PIPE, stderr=log.stream, env={**os.environ, **env}
    ) as process:
        try:
            assert process.stdout is not None
            first = process.stdout.readline().split()
            assert first[0] == b"ready"
            write_values(env_file, A="canary-g2-0d0d")
            stop = json.loads(log.wait_for('"event": "on_change"'))
            assert stop["action"] == action
            killed = json.loads(log.wait_for('"event": "grace_expired"'))
            assert "did not exit 1 s after being asked" in str(killed["message"])
            # No --grace: no deadline of secretinit's own for an orchestrator's stop, but
            # this stop is secretinit's, so it ends after the (shortened) OWN_STOP_GRACE.
            assert seconds(killed["time"]) - seconds(stop["time"]) < 3
            if expected is None:  # restart: the command runs again after the kill
                again = process.stdout.readline().split()
                assert again[0] == b"ready" and again[1] != first[1]
                os.kill(int(again[1]), signal.SIGKILL)  # ends the supervisor too
                expected = 128 + signal.SIGKILL
            assert process.wait(timeout=30) == expected
        finally:
            if process.poll() is None:
                process.kill()
    assert (secrets_dir / "A").read_text() == "canary-g2-0d0d"


def test_a_last_run_releases_what_providers_hold_once_the_command_exited(
    counter_provider: dict[str, str], secrets_dir: Path, log: LogFile
) -> None:
    released = Path(counter_provider["COUNTER_RELEASED"])
    options = ["--dir", str(secrets_dir), "--refresh", "60", "--log-level", "debug"]
    result = run_secretinit(["run", *options, "--", "sleep", "1.5"], counter_provider)
    assert result.returncode == 0, result.stderr
    # The start fetched once and a refresh (asked within 1 s) once more: the state says 2.
    assert released.read_text() == "released after 2 fetches\n"
    assert "release run ended (status 0)" in result.stderr
    assert not (secrets_dir / "..secretinit" / "providers.json").exists()


def test_a_command_that_cannot_start_releases_what_the_start_fetched(
    counter_provider: dict[str, str], secrets_dir: Path
) -> None:
    options = ["--dir", str(secrets_dir), "--refresh", "60"]
    result = run_secretinit(["run", *options, "--", "no-such-command-4f2a"], counter_provider)
    assert result.returncode == 127, result.stderr
    assert Path(counter_provider["COUNTER_RELEASED"]).read_text() == "released after 1 fetches\n"


def test_a_sidecar_leaves_what_providers_hold_to_their_ttl(
    counter_provider: dict[str, str], secrets_dir: Path, log: LogFile
) -> None:
    """The application of another container may still hold the credentials while it drains."""
    options = ["--dir", str(secrets_dir), "--refresh", "60", "--log-format", "json"]
    sidecar = Running(["fetch", *options], counter_provider, stderr=log.stream)
    try:
        log.wait_for('"event": "summary"')
        sidecar.send(signal.SIGTERM)
        status, _, _ = sidecar.wait()
    finally:
        sidecar.kill()
    assert status == 0
    assert not Path(counter_provider["COUNTER_RELEASED"]).exists()
    assert (secrets_dir / "..secretinit" / "providers.json").exists()
