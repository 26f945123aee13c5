"""The supervisor, on real processes: exit statuses, signals, reaping, grace, --user, PID 1.

Each behaviour is checked twice where it matters: with secretinit as an
ordinary process (a child subreaper) and as PID 1 of a new PID namespace,
where the kernel's rules differ (an unhandled SIGTERM is ignored; orphans
come to PID 1).
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import run_secretinit
from secretinit._cli import cli
from tests.processes import PID_NAMESPACE, SIGNAL_CHILD, Running, uids_of, zombies_of

NOBODY = 65534
FORWARDED = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH")
NAMESPACES = [
    pytest.param(False, id="process"),
    pytest.param(True, id="pid1", marks=pytest.mark.root),
]


def run_plain(*command: str, pid_namespace: bool = False) -> subprocess.CompletedProcess[str]:
    args = ["run", "--", *command]
    if pid_namespace:
        from conftest import secretinit_executable

        return subprocess.run(
            [
                *PID_NAMESPACE,
                secretinit_executable(),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    return run_secretinit(args)


@pytest.mark.parametrize("pid_namespace", NAMESPACES)
@pytest.mark.parametrize("status", [0, 3, 255])
def test_exit_status_is_the_commands(pid_namespace: bool, status: int) -> None:
    result = run_plain("sh", "-c", f"exit {status}", pid_namespace=pid_namespace)
    assert result.returncode == status, result.stderr


@pytest.mark.parametrize("pid_namespace", NAMESPACES)
@pytest.mark.parametrize("number", [signal.SIGKILL, signal.SIGTERM, signal.SIGSEGV])
def test_death_by_signal_is_128_plus_n(pid_namespace: bool, number: int) -> None:
    result = run_plain("sh", "-c", f"kill -{int(number)} $$", pid_namespace=pid_namespace)
    assert result.returncode == 128 + number, result.stderr
    assert f"was killed by {signal.Signals(number).name}" in result.stderr


def test_command_not_found_is_127_and_not_executable_is_126(tmp_path: Path) -> None:
    result = run_plain("no-such-command-anywhere")
    assert result.returncode == 127
    assert "no-such-command-anywhere: command not found" in result.stderr
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    result = run_plain(str(script))
    assert result.returncode == 126
    assert "cannot execute: Permission denied" in result.stderr
    assert "Traceback" not in result.stderr


def test_arguments_pass_through_untouched() -> None:
    tricky = ["--grace", "-x", "--", "a b", "$HOME", "'q'", ""]
    result = run_secretinit(
        ["run", "--", sys.executable, "-c", "import sys; print(sys.argv[1:])", *tricky]
    )
    assert result.stdout.strip() == repr(tricky)
    result = run_secretinit(
        ["run", sys.executable, "-c", "import sys; print(sys.argv[1:])", "--dir", "x"]
    )
    assert result.stdout.strip() == repr(["--dir", "x"])  # options after the command are its own


@pytest.mark.parametrize("pid_namespace", NAMESPACES)
def test_every_forwarded_signal_reaches_the_child(pid_namespace: bool) -> None:
    running = Running(
        ["run", "--", sys.executable, SIGNAL_CHILD, "handle", "7"], pid_namespace=pid_namespace
    )
    try:
        running.expect("ready")
        for name in FORWARDED:
            if name == "SIGTERM":
                continue
            running.send(getattr(signal, name))
            assert running.expect(name) == name
        running.send(signal.SIGTERM)
        assert running.expect("SIGTERM") == "SIGTERM"
        status, _, stderr = running.wait()
    finally:
        running.kill()
    assert status == 7, stderr  # the child's own status after handling SIGTERM


@pytest.mark.parametrize("pid_namespace", NAMESPACES)
def test_sigterm_ends_a_child_that_handles_it_promptly(pid_namespace: bool) -> None:
    running = Running(
        ["run", "--grace", "30", "--", sys.executable, SIGNAL_CHILD, "handle"],
        pid_namespace=pid_namespace,
    )
    try:
        running.expect("ready")
        started = time.monotonic()
        running.send(signal.SIGTERM)
        status, _, stderr = running.wait()
        elapsed = time.monotonic() - started
    finally:
        running.kill()
    assert status == 0, stderr
    # Far inside the 30 s grace: the exit came from the child, not from a SIGKILL.
    assert elapsed < 15
    assert "grace" not in stderr


@pytest.mark.parametrize("pid_namespace", NAMESPACES)
def test_child_ignoring_sigterm_is_killed_after_grace(pid_namespace: bool) -> None:
    running = Running(
        ["run", "--grace", "0.5", "--", sys.executable, SIGNAL_CHILD, "ignore-term"],
        pid_namespace=pid_namespace,
    )
    try:
        running.expect("ready")
        started = time.monotonic()
        running.send(signal.SIGTERM)
        status, _, stderr = running.wait()
        elapsed = time.monotonic() - started
    finally:
        running.kill()
    assert status == 128 + signal.SIGKILL, stderr
    assert "did not exit 0.5 s after being asked; killing it" in stderr
    assert elapsed >= 0.5


DRAINING = "trap 'sleep 10.5; echo drained; exit 3' TERM; echo ready; while :; do sleep 0.1; done"


def test_without_grace_the_orchestrator_owns_the_deadline() -> None:
    """Issue 14, item 2: an application that drains for longer than 10 s is not killed.

    As tini, secretinit sets no deadline of its own by default: Swarm's
    stop_grace_period (or docker stop -t, or Kubernetes'
    terminationGracePeriodSeconds) is the one that SIGKILLs the container.
    """
    running = Running(["run", "--", "sh", "-c", DRAINING])
    try:
        running.expect("ready")
        running.send(signal.SIGTERM)
        status, rest, stderr = running.wait(timeout=40)
    finally:
        running.kill()
    assert status == 3, stderr  # the application's own status, after 10.5 s of draining
    assert "drained" in rest
    assert "killing it" not in stderr
    # Issue 14, item 15: a forwarded stop signal is visible at the default level.
    assert "secretinit: info: forwarding SIGTERM to the command" in stderr


def test_supervisor_argv_carries_a_grace_only_when_one_is_set() -> None:
    from secretinit._supervisor import SupervisorOptions, parse_arguments, supervisor_argv

    options = SupervisorOptions(["app"])
    argv = supervisor_argv(options)
    assert "--grace" not in argv
    assert parse_arguments(argv[5:]).grace is None
    options.grace = 25.0
    assert parse_arguments(supervisor_argv(options)[5:]).grace == 25.0


def test_grace_kills_the_whole_process_group(tmp_path: Path) -> None:
    marker = tmp_path / "grandchild"
    script = f"trap '' TERM; (trap '' TERM; sleep 60; touch {marker}) & echo ready $!; wait"
    running = Running(["run", "--grace", "0.3", "--", "sh", "-c", script])
    try:
        grandchild = int(running.expect("ready").split()[1])
        running.send(signal.SIGTERM)
        status, _, _ = running.wait()
    finally:
        running.kill()
    assert status == 137
    deadline = time.monotonic() + 10
    while Path(f"/proc/{grandchild}").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (
        not Path(f"/proc/{grandchild}").exists()
        or "Z" in Path(f"/proc/{grandchild}/stat").read_text()
    )


ORPHAN_SCRIPT = """
( sleep 0.2 & ) ; ( sleep 0.2 & ) ; ( sleep 0.2 & )
sleep 1
echo ready
exec sleep 60
"""


def test_orphaned_grandchildren_are_reaped_by_the_subreaper() -> None:
    running = Running(["run", "--", "sh", "-c", ORPHAN_SCRIPT])
    try:
        running.expect("ready")
        assert zombies_of(running.pid) == []
        children = Path(f"/proc/{running.pid}/task/{running.pid}/children").read_text().split()
        assert len(children) == 1  # only the command itself: the orphans were adopted and reaped
        running.send(signal.SIGTERM)
        running.wait()
    finally:
        running.kill()


@pytest.mark.usefixtures("require_root")
def test_orphaned_grandchildren_are_reaped_by_pid_1() -> None:
    # The check runs inside the namespace, where the orphans belong to PID 1.
    script = ORPHAN_SCRIPT.replace(
        "echo ready",
        "echo ready; "
        "echo zombies $(grep -l '^[0-9]* ([^)]*) Z ' /proc/[0-9]*/stat 2>/dev/null | wc -l)"
        "; echo pid1 $(tr '\\0' ' ' < /proc/1/cmdline)",
    )
    running = Running(["run", "--", "sh", "-c", script], pid_namespace=True)
    try:
        running.expect("ready")
        assert running.expect("zombies") == "zombies 0"
        assert "secretinit/_supervisor.py" in running.expect("pid1")
        running.send(signal.SIGTERM)
        status, _, _ = running.wait()
    finally:
        running.kill()
    assert status == 143


def test_supervisor_forgets_the_providers() -> None:
    """The resident process is the lean stdlib supervisor, not the CLI with its imports."""
    running = Running(["run", "--", sys.executable, SIGNAL_CHILD, "handle"])
    try:
        running.expect("ready")
        cmdline = Path(f"/proc/{running.pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[1:4] == [b"-I", b"-S", b"-B"]
        assert cmdline[4].endswith(b"secretinit/_supervisor.py")
        maps = Path(f"/proc/{running.pid}/maps").read_text()
        assert "site-packages" not in maps  # nothing of click, dotenv or an SDK is mapped
        running.send(signal.SIGTERM)
        running.wait()
    finally:
        running.kill()


def test_the_child_gets_the_terminal_foreground(tmp_path: Path) -> None:
    """Under ``docker run -it`` the command must read the terminal, not stop on SIGTTIN."""
    from conftest import secretinit_executable

    pid, master = pty.fork()
    if pid == 0:  # the child: become secretinit on the new terminal
        os.execv(
            secretinit_executable(),
            [
                secretinit_executable(),
                "run",
                "--",
                "sh",
                "-c",
                "echo prompt; read line; echo got-$line",
            ],
        )
    output = b""
    deadline = time.monotonic() + 20
    sent = False
    try:
        while time.monotonic() < deadline and b"got-hello" not in output:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    output += os.read(master, 1024)
                except OSError:
                    break
            if b"prompt" in output and not sent:
                os.write(master, b"hello\n")
                sent = True
    finally:
        if b"got-hello" not in output:
            os.kill(pid, signal.SIGKILL)  # stuck, as a child stopped by SIGTTIN would be
        os.waitpid(pid, 0)
        os.close(master)
    assert b"got-hello" in output, output


@pytest.mark.usefixtures("require_root")
def test_user_runs_the_child_and_supervisor_unprivileged(tmp_path: Path) -> None:
    env_file = tmp_path / "dev.env"
    env_file.write_text("DB_PASSWORD=only-for-nobody-4b1d\n")
    script = (
        "echo ids $(id -u) $(id -g) $(id -G); echo home $HOME; "
        'echo value $(cat "$DB_PASSWORD_FILE"); '
        'dir="$(dirname "$DB_PASSWORD_FILE")"; '
        'echo file $(stat -L -c "%u:%g %a" "$DB_PASSWORD_FILE") $(stat -c "%u:%g %a" "$dir"); '
        'echo path "$DB_PASSWORD_FILE"; echo ready; exec sleep 60'
    )
    running = Running(
        ["run", "--user", "nobody", "--env-file", str(env_file), "--", "sh", "-c", script],
        {"DB_PASSWORD": "env-file://unused#X"},
    )
    try:
        assert running.expect("ids") == f"ids {NOBODY} {NOBODY} {NOBODY}"
        assert running.expect("home") == "home /nonexistent"
        assert running.expect("value") == "value only-for-nobody-4b1d"
        assert running.expect("file") == f"file {NOBODY}:{NOBODY} 400 {NOBODY}:{NOBODY} 700"
        path = running.expect("path").split(" ", 1)[1]
        running.expect("ready")
        assert uids_of(running.pid) == (NOBODY, NOBODY)  # the supervisor dropped root too
        other = subprocess.run(
            ["cat", path],
            user=NOBODY - 1,
            group=NOBODY - 1,
            capture_output=True,
            text=True,
            check=False,
        )
        assert other.returncode != 0
        assert "Permission denied" in other.stderr
        running.send(signal.SIGTERM)
        status, _, _ = running.wait()
    finally:
        running.kill()
    assert status == 143


@pytest.mark.usefixtures("require_root")
def test_user_with_explicit_group_and_numeric_ids(tmp_path: Path) -> None:
    result = run_secretinit(
        ["run", "--user", "12345:users", "--", "sh", "-c", "id -u; id -g; id -G; echo $HOME"]
    )
    import grp

    users = grp.getgrnam("users").gr_gid
    assert result.stdout.split() == ["12345", str(users), str(users), "/"], result.stderr


@pytest.mark.usefixtures("unprivileged")
def test_user_without_root_is_refused() -> None:
    result = CliRunner().invoke(cli, ["run", "--user", "root", "--", "true"])
    assert result.exit_code == 2
    assert "needs root" in result.stderr


def test_bad_user_is_a_usage_error() -> None:
    result = run_secretinit(["run", "--user", "no-such-user-xyz", "--", "true"])
    assert result.returncode == 2
    assert "no user named 'no-such-user-xyz'" in result.stderr
    result = run_secretinit(["run", "--user", "nobody:no-such-group", "--", "true"])
    assert result.returncode == 2
    assert "no group named 'no-such-group'" in result.stderr


def test_exec_replaces_secretinit() -> None:
    running = Running(["run", "--exec", "--", "sh", "-c", "echo pid $$; exit 4"])
    try:
        line = running.expect("pid")
        status, _, _ = running.wait()
    finally:
        running.kill()
    assert int(line.split()[1]) == running.pid
    assert status == 4


def test_program_argv_runs_this_secretinit() -> None:
    from secretinit import __version__
    from secretinit._supervisor import program_argv

    argv = program_argv("--version")
    assert argv[0] == sys.executable
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert __version__ in done.stdout


@pytest.mark.usefixtures("require_root")
def test_json_logs_still_work_once_root_is_dropped() -> None:
    # After --user the interpreter's own files may be out of reach (here under
    # /root): nothing the supervisor logs may need an import then.
    result = run_secretinit(["run", "--user", "nobody", "--log-format", "json", "--", "true"])
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert records[-1]["event"] == "child_exited"
