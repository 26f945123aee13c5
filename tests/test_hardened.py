"""Hardened runtimes: a read-only root file system and the least capabilities.

Each test runs the real ``secretinit`` in a mount namespace of its own
(``unshare --mount``) shaped like a hardened container: Docker's
``--read-only`` (every path read-only but the ``/dev/shm`` tmpfs) or a root
start whose capabilities are cut to a set with ``setpriv --bounding-set``,
as ``docker run --cap-drop ALL --cap-add ...`` does.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from conftest import PROCESS_TIMEOUT, assert_no_leak, secretinit_executable

pytestmark = pytest.mark.root

NOBODY = 65534
STRANGER = 4242
VALUE = "hardened-value-5c1e"
ALL_THREE = "+setuid,+setgid,+chown"  # the set the README documents


@pytest.fixture
def env_file(shared_dir: Path) -> Path:
    """An env-file every user can read, with one planted value."""
    path = shared_dir / "app.env"
    path.write_text(f"A={VALUE}\n")
    path.chmod(0o644)
    return path


def in_namespace(
    script: str, env_file: Path, *, cwd: str = "/"
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (sh) as root in a private mount namespace; $SECRETINIT is the command."""
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "SECRETINIT": shlex.quote(secretinit_executable()),
        "A": f"env-file://{env_file}#A",
    }
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-euc", script],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
        check=False,
    )


# Docker's --read-only: the image's file system, /run and /tmp included, is
# read-only; /dev/shm stays a writable tmpfs.
READ_ONLY_ROOT = """
for path in /run /tmp /var/tmp "$HOME_DIR"; do
    mount --bind "$path" "$path"
    mount -o remount,bind,ro "$path"
done
"""

AS_NOBODY = (
    f"setpriv --reuid {NOBODY} --regid {NOBODY} --clear-groups --no-new-privs "
    "--bounding-set -all --inh-caps -all"
)


def read_only(extra: str, command: str) -> str:
    return READ_ONLY_ROOT.replace("$HOME_DIR", "/work" if Path("/work").is_dir() else "/") + (
        extra + command
    )


def test_read_only_root_writes_to_shm_without_a_temporary_directory(env_file: Path) -> None:
    # --exec: this machine's interpreter lives under /root, which nobody may
    # not execute again for a supervisor; the container tier runs the
    # supervisor so, and the next test as root dropping to nobody.
    done = in_namespace(
        read_only(
            "",
            f"cd /tmp; {AS_NOBODY} $SECRETINIT run --exec -- "
            'sh -c \'echo "file=$A_FILE"; cat "$A_FILE"\'',
        ),
        env_file,
    )
    assert done.returncode == 0, done.stderr
    assert "internal error" not in done.stderr
    assert done.stdout.endswith(f"\n{VALUE}")  # the application read its secret
    assert done.stdout.startswith("file=/dev/shm/secretinit-")
    assert_no_leak([VALUE], done.stderr)


def test_read_only_root_start_drops_to_the_user(env_file: Path) -> None:
    done = in_namespace(
        read_only(
            "",
            f"cd /tmp; setpriv --bounding-set -all,{ALL_THREE} --inh-caps -all "
            f'$SECRETINIT run --user {NOBODY} -- sh -c \'echo "file=$A_FILE"; cat "$A_FILE"\'',
        ),
        env_file,
    )
    assert done.returncode == 0, done.stderr
    assert f"\n{VALUE}" in done.stdout  # the application read its secret
    file_line = next(line for line in done.stdout.splitlines() if line.startswith("file="))
    assert file_line.startswith("file=/dev/shm/secretinit-")
    assert_no_leak([VALUE], done.stderr)


def test_nowhere_to_write_is_a_clear_error(env_file: Path) -> None:
    done = in_namespace(
        read_only(
            "mount --bind /dev/shm /dev/shm; mount -o remount,bind,ro /dev/shm\n",
            f"cd /tmp; {AS_NOBODY} $SECRETINIT run --exec -- true",
        ),
        env_file,
    )
    assert done.returncode == 73, done.stderr
    assert "internal error" not in done.stderr
    assert "no directory for secrets could be created" in done.stderr
    assert "/dev/shm: Read-only file system" in done.stderr
    assert "no temporary directory is writable" in done.stderr
    assert "mount a tmpfs at /run/secretinit or give one with --dir" in done.stderr


def fetch_as_root(caps: str, directory: str) -> str:
    """``secretinit fetch --user nobody`` as root holding only ``caps``."""
    return (
        f"setpriv --bounding-set -all,{caps} --inh-caps -all "
        f"$SECRETINIT fetch --user {NOBODY} --dir {directory}"
    )


def listing(directory: Path) -> list[tuple[str, int, int, int]]:
    """(name, mode, uid, gid) of the directory and of the file A behind its link.

    Every entry of the layout (generation, ``..data``, the ``A`` link) must be
    the user's too: nothing of root's is left in the user's directory.
    """
    for entry in directory.iterdir():
        assert (entry.lstat().st_uid, entry.lstat().st_gid) == (NOBODY, NOBODY), entry
    entries = [directory, directory / "A"]
    return [(p.name, p.stat().st_mode & 0o7777, p.stat().st_uid, p.stat().st_gid) for p in entries]


def private_to_nobody(directory: Path) -> list[tuple[str, int, int, int]]:
    return [(directory.name, 0o700, NOBODY, NOBODY), ("A", 0o400, NOBODY, NOBODY)]


@pytest.mark.parametrize(
    "prepare",
    [
        pytest.param("", id="created"),
        pytest.param("mkdir -m 0755 $D; chown root:root $D", id="root's directory"),
        pytest.param(f"mkdir -m 0700 $D; chown {STRANGER}:{STRANGER} $D", id="someone else's"),
        pytest.param(
            f"mkdir $D; mount -t tmpfs -o uid={STRANGER},gid={STRANGER},mode=0700 tmpfs $D",
            id="someone else's tmpfs",
        ),
        pytest.param(
            f"mkdir -m 0700 $D; echo old > $D/A; chmod 0400 $D/A; chown -R {NOBODY}:{NOBODY} $D",
            id="the user's, with a file",
        ),
    ],
)
def test_root_start_needs_setuid_setgid_chown_only(
    env_file: Path, shared_dir: Path, prepare: str
) -> None:
    directory = shared_dir / "secrets"
    script = f"D={directory}\n{prepare}\n{fetch_as_root(ALL_THREE, str(directory))}\n"
    script += f"ls -lnL {directory}/A\n"  # inside the namespace: a tmpfs is gone after it
    done = in_namespace(script, env_file)
    assert done.returncode == 0, done.stderr
    if "tmpfs" not in prepare:
        assert listing(directory) == private_to_nobody(directory)
        assert (directory / "A").read_text() == VALUE
    else:
        assert f"-r-------- 1 {NOBODY} {NOBODY}" in done.stdout, done.stdout
    assert_no_leak([VALUE], done.stdout, done.stderr)


def test_the_users_own_directory_needs_no_chown(env_file: Path, shared_dir: Path) -> None:
    directory = shared_dir / "secrets"
    directory.mkdir(mode=0o755)
    os.chown(directory, NOBODY, NOBODY)
    done = in_namespace(fetch_as_root("+setuid,+setgid", str(directory)), env_file)
    assert done.returncode == 0, done.stderr
    assert listing(directory) == private_to_nobody(directory)


@pytest.mark.parametrize(
    ("caps", "status", "named"),
    [
        pytest.param("+setuid,+setgid", 73, "CHOWN", id="no CHOWN"),
        pytest.param("+setuid,+chown", 2, "SETGID", id="no SETGID"),
        pytest.param("+setgid,+chown", 2, "SETUID", id="no SETUID"),
        pytest.param("+chown", 2, "SETUID and SETGID", id="neither"),
    ],
)
def test_a_missing_capability_is_named(
    env_file: Path, shared_dir: Path, caps: str, status: int, named: str
) -> None:
    directory = shared_dir / "secrets"
    done = in_namespace(fetch_as_root(caps, str(directory)), env_file)
    assert done.returncode == status, done.stderr
    assert f"without the {named} capabilit" in done.stderr
    assert "--cap-add" in done.stderr
    assert not (directory / "A").exists()


def test_run_drops_to_the_user_with_the_three_capabilities(env_file: Path) -> None:
    """The default directory, the supervisor and the command, from a root start with three."""
    done = in_namespace(
        f"setpriv --bounding-set -all,{ALL_THREE} --inh-caps -all $SECRETINIT run "
        f"--user {NOBODY} -- sh -c 'id -u; grep ^Uid: /proc/$PPID/status; "
        'stat -L -c "%a %u" "$(dirname "$A_FILE")" "$A_FILE"; cat "$A_FILE"\'',
        env_file,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == str(NOBODY)
    assert lines[1].split()[1:] == [str(NOBODY)] * 4  # the supervisor (parent): nobody too
    assert lines[2:4] == [f"700 {NOBODY}", f"400 {NOBODY}"]
    assert lines[4] == VALUE
