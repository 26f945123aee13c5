"""The secret directory and its files: modes, owners, atomicity, hostile names, the layout."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from secretinit import WriteFailed
from secretinit._log import configure_logging
from secretinit._mounts import filesystem_type, mount_type
from secretinit._supervisor import DATA_LINK, TEMPORARY_PREFIX
from secretinit._writer import (
    FileOwner,
    SecretFile,
    open_secret_directory,
    write_secret_files,
)

NOBODY = 65534


def me() -> FileOwner:
    return FileOwner(os.geteuid(), os.getegid())


def write(path: Path, *files: SecretFile, owner: FileOwner | None = None) -> list[str]:
    owner = owner or me()
    directory = open_secret_directory(str(path), owner)
    try:
        return write_secret_files(directory, files, owner)
    finally:
        directory.close()


def mode(path: Path) -> int:
    """The mode of what ``path`` names (a NAME is a link into ..data: the file's)."""
    return stat.S_IMODE(path.stat().st_mode)


def visible(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if not p.name.startswith(".."))


def generations(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.name.startswith("..2"))


def test_files_are_private_from_the_start(secrets_dir: Path) -> None:
    previous = os.umask(0o022)
    try:
        write(
            secrets_dir,
            SecretFile("A", "A", b"alpha", 0o400),
            SecretFile("B", "b.key", b"\x00binary\xff", 0o440),
        )
    finally:
        os.umask(previous)
    assert mode(secrets_dir) == 0o700
    assert (secrets_dir / "A").read_bytes() == b"alpha"
    assert mode(secrets_dir / "A") == 0o400
    assert (secrets_dir / "b.key").read_bytes() == b"\x00binary\xff"
    assert mode(secrets_dir / "b.key") == 0o440
    assert visible(secrets_dir) == ["A", "b.key"]
    [generation] = generations(secrets_dir)
    assert sorted(p.name for p in secrets_dir.iterdir()) == [generation, DATA_LINK, "A", "b.key"]
    assert os.readlink(secrets_dir / DATA_LINK) == generation
    assert os.readlink(secrets_dir / "A") == "..data/A"
    assert stat.S_IMODE((secrets_dir / generation).lstat().st_mode) == 0o700
    assert filesystem_type(str(secrets_dir)) == "tmpfs"


def test_rewriting_replaces_atomically(secrets_dir: Path) -> None:
    write(secrets_dir, SecretFile("A", "A", b"one", 0o400))
    before = (secrets_dir / "A").stat().st_ino
    write(secrets_dir, SecretFile("A", "A", b"two", 0o400))
    assert (secrets_dir / "A").read_bytes() == b"two"
    assert (secrets_dir / "A").stat().st_ino != before  # a new file renamed over, never rewritten


def test_symlink_at_the_target_is_replaced_not_followed(secrets_dir: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    secrets_dir.mkdir(mode=0o700)
    (secrets_dir / "A").symlink_to(victim)
    write(secrets_dir, SecretFile("A", "A", b"secret", 0o400))
    assert victim.read_text() == "untouched"
    assert os.readlink(secrets_dir / "A") == "..data/A"
    assert (secrets_dir / "A").read_bytes() == b"secret"


def test_symlink_as_the_directory_is_refused(secrets_dir: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    secrets_dir.parent.mkdir(exist_ok=True)
    secrets_dir.symlink_to(elsewhere)
    with pytest.raises(WriteFailed, match="it is a symlink"):
        write(secrets_dir, SecretFile("A", "A", b"secret", 0o400))
    assert list(elsewhere.iterdir()) == []


def test_directory_in_the_way_writes_nothing(secrets_dir: Path) -> None:
    secrets_dir.mkdir(mode=0o700)
    (secrets_dir / "B").mkdir()
    with pytest.raises(
        WriteFailed, match=r"secret B: cannot write .*/B: a directory is in the way"
    ):
        write(secrets_dir, SecretFile("A", "A", b"a", 0o400), SecretFile("B", "B", b"b", 0o400))
    assert sorted(p.name for p in secrets_dir.iterdir()) == ["B"]  # A was not written either


@pytest.mark.parametrize(
    "name", ["..", ".", "a/b", "../escape", "/etc/passwd", "", "..data", "..2025_01_01"]
)
def test_names_that_leave_the_directory_are_refused(secrets_dir: Path, name: str) -> None:
    with pytest.raises(WriteFailed, match="is not one file name"):
        write(secrets_dir, SecretFile("X", name, b"x", 0o400))
    assert not (secrets_dir.parent / "escape").exists()


def test_a_failed_write_leaves_no_temporary_file(secrets_dir: Path) -> None:
    secrets_dir.mkdir(mode=0o700)
    (secrets_dir / "C").mkdir()
    with pytest.raises(WriteFailed):
        write(secrets_dir, SecretFile("A", "A", b"a", 0o400), SecretFile("C", "C", b"c", 0o400))
    assert not [p for p in secrets_dir.iterdir() if p.name.startswith(TEMPORARY_PREFIX)]
    assert generations(secrets_dir) == []


def test_existing_directory_is_made_private(secrets_dir: Path) -> None:
    secrets_dir.mkdir()
    secrets_dir.chmod(0o1777)
    write(secrets_dir, SecretFile("A", "A", b"a", 0o400))
    assert mode(secrets_dir) == 0o700


def test_group_owner_opens_the_directory_to_the_group(secrets_dir: Path) -> None:
    owner = FileOwner(os.geteuid(), os.getegid(), shared_group=True)
    write(secrets_dir, SecretFile("A", "A", b"a", 0o440), owner=owner)
    assert mode(secrets_dir) == 0o750


@pytest.mark.usefixtures("require_root")
def test_files_belong_to_the_application_user(secrets_dir: Path) -> None:
    owner = FileOwner(NOBODY, NOBODY)
    write(secrets_dir, SecretFile("A", "A", b"a", 0o400), owner=owner)
    for path in (secrets_dir, secrets_dir / "A"):
        info = path.stat()
        assert (info.st_uid, info.st_gid) == (NOBODY, NOBODY)


@pytest.mark.usefixtures("unprivileged")
def test_directory_of_another_user_is_refused(shared_dir: Path) -> None:
    if os.geteuid() == 0:
        pytest.fail("the unprivileged fixture did not drop root")
    # /dev/shm-like: a world-writable parent where someone else made the directory first.
    with pytest.raises(WriteFailed, match="belongs to uid 0"):
        open_secret_directory("/", me())
    directory = open_secret_directory(str(shared_dir / "mine"), me())
    directory.close()
    assert mode(shared_dir / "mine") == 0o700


def test_directory_on_disk_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert filesystem_type(str(tmp_path)) != "tmpfs", "this test needs a disk-backed temp dir"
    configure_logging("text", "warning")
    write(tmp_path / "secrets", SecretFile("A", "A", b"a", 0o400))
    assert "not in memory: secrets will reach the disk" in capsys.readouterr().err


def test_default_directory_is_memory_backed_and_temporary() -> None:
    directory = open_secret_directory(None, me())
    try:
        assert directory.filesystem in ("tmpfs", "ramfs")
        assert mode(Path(directory.path)) == 0o700
        if directory.path != "/run/secretinit":
            assert directory.temporary and directory.path.startswith("/dev/shm/secretinit-")
    finally:
        directory.close()
        if directory.temporary:
            os.rmdir(directory.path)


def test_mount_table_parsing() -> None:
    table = [
        "22 1 0:21 / / rw - ext4 /dev/vda rw",
        "25 22 0:23 / /run rw - tmpfs tmpfs rw",
        "26 25 0:24 / /run/with\\040space rw - ramfs none rw",
        "27 22 0:25 / /data rw - ext4 /dev/vdb rw",
        "28 22 0:26 / /data rw - tmpfs tmpfs rw",  # mounted over /data
        "garbage line",
    ]
    assert mount_type("/run/secretinit", table) == "tmpfs"
    assert mount_type("/run/with space/x", table) == "ramfs"
    assert mount_type("/runner", table) == "ext4"
    assert mount_type("/data/x", table) == "tmpfs"
    assert mount_type("/x", []) is None


def test_a_path_to_be_created_is_judged_by_its_parent(secrets_dir: Path) -> None:
    assert filesystem_type(str(secrets_dir / "not" / "yet")) == "tmpfs"


def secret(name: str, data: bytes, mode: int = 0o400) -> SecretFile:
    return SecretFile(name, name, data, mode)


def test_an_unchanged_set_is_not_written_again(secrets_dir: Path) -> None:
    assert write(secrets_dir, secret("A", b"one"), secret("B", b"two")) == ["A", "B"]
    before = os.readlink(secrets_dir / DATA_LINK)
    assert write(secrets_dir, secret("A", b"one"), secret("B", b"two")) == []
    assert os.readlink(secrets_dir / DATA_LINK) == before
    assert generations(secrets_dir) == [before]


def test_a_change_swaps_the_whole_set_and_the_old_one_goes(secrets_dir: Path) -> None:
    write(secrets_dir, secret("A", b"one"), secret("B", b"two"))
    first = os.readlink(secrets_dir / DATA_LINK)
    assert write(secrets_dir, secret("A", b"one"), secret("B", b"three")) == ["B"]
    second = os.readlink(secrets_dir / DATA_LINK)
    assert second != first
    assert generations(secrets_dir) == [second]
    assert (secrets_dir / "A").read_bytes() == b"one"
    assert (secrets_dir / "B").read_bytes() == b"three"
    # A mode is part of what a file is: changing it is a change.
    assert write(secrets_dir, secret("A", b"one", 0o440), secret("B", b"three")) == ["A"]
    assert mode(secrets_dir / "A") == 0o440


def test_a_name_no_longer_written_disappears(secrets_dir: Path) -> None:
    write(secrets_dir, secret("A", b"a"), secret("B", b"b"))
    write(secrets_dir, secret("A", b"a"))
    assert visible(secrets_dir) == ["A"]
    assert not os.path.lexists(secrets_dir / "B")
    assert os.listdir(secrets_dir / DATA_LINK) == ["A"]


def test_what_a_killed_write_left_is_removed_by_the_next(secrets_dir: Path) -> None:
    write(secrets_dir, secret("A", b"a"))
    stale = secrets_dir / "..2000_01_01_00_00_00.0123456789abcdef"
    stale.mkdir()
    (stale / "A").write_bytes(b"old")
    (secrets_dir / f"{TEMPORARY_PREFIX}0123456789abcdef.tmp").symlink_to("..data/A")
    write(secrets_dir, secret("A", b"a2"))
    assert generations(secrets_dir) == [os.readlink(secrets_dir / DATA_LINK)]
    assert not [p for p in secrets_dir.iterdir() if p.name.startswith(TEMPORARY_PREFIX)]


def test_a_planted_data_link_is_replaced_not_followed(secrets_dir: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "A").write_text("planted")
    secrets_dir.mkdir(mode=0o700)
    (secrets_dir / DATA_LINK).symlink_to(elsewhere)
    (secrets_dir / "A").symlink_to("..data/A")
    assert write(secrets_dir, secret("A", b"secret")) == ["A"]  # never taken for the current set
    assert (secrets_dir / "A").read_bytes() == b"secret"
    assert os.readlink(secrets_dir / DATA_LINK) in generations(secrets_dir)
    assert (elsewhere / "A").read_text() == "planted"
    assert sorted(p.name for p in elsewhere.iterdir()) == ["A"]


def test_a_directory_at_data_stops_the_write(secrets_dir: Path) -> None:
    secrets_dir.mkdir(mode=0o700)
    (secrets_dir / DATA_LINK).mkdir()
    with pytest.raises(WriteFailed, match=r"\.\.data is a directory"):
        write(secrets_dir, secret("A", b"a"))
    assert visible(secrets_dir) == []
    assert generations(secrets_dir) == []


def test_stop_signals_are_held_while_the_links_change() -> None:
    import signal
    import time

    from secretinit._writer import held_stop_signals

    got: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda number, _frame: got.append(number))
    try:
        with held_stop_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # an unheld handler would have run by now
            assert got == []
        assert got == [signal.SIGTERM]
        got.clear()
        with held_stop_signals():  # nested (a refresh run around the writer's own)
            with held_stop_signals():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
            assert got == []  # handed to the outer one
        assert got == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_write_that_fails_midway_leaves_the_old_set(secrets_dir: Path) -> None:
    import resource

    write(secrets_dir, secret("A", b"small"), secret("B", b"b"))
    before = os.readlink(secrets_dir / DATA_LINK)
    pid = os.fork()
    if pid == 0:  # a file size limit makes the second file's write fail (EFBIG)
        try:
            hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
            resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
            write(secrets_dir, secret("A", b"new"), secret("B", b"x" * 8192))
        except WriteFailed as err:
            os._exit(3 if "secret B: cannot write" in str(err) else 4)
        finally:
            os._exit(5)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 3
    assert os.readlink(secrets_dir / DATA_LINK) == before
    assert generations(secrets_dir) == [before]
    assert (secrets_dir / "A").read_bytes() == b"small"
    assert not [p for p in secrets_dir.iterdir() if p.name.startswith(TEMPORARY_PREFIX)]


# A reader in another process, as the application is: through ..data (one
# consistent set) and through each NAME (what NAME_FILE names), checking each
# file's bytes, length, mode and owner against the generation it claims.
HAMMERING_READER = r"""
import json, os, stat, sys
directory, stop, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
counts = dict(sets=0, reads=0, partial=0, mixed=0, mode=0, missing=0)
modes = {"A": 0o400, "B": 0o440}

def read(name, dir_fd=None):
    fd = os.open(name if dir_fd is not None else os.path.join(directory, name), os.O_RDONLY,
                 dir_fd=dir_fd)
    try:
        info = os.fstat(fd)
        data = b""
        while chunk := os.read(fd, 1 << 16):
            data += chunk
    finally:
        os.close(fd)
    counts["reads"] += 1
    if stat.S_IMODE(info.st_mode) != modes[name] or info.st_uid != os.geteuid():
        counts["mode"] += 1
    generation = data[:8]
    if len(data) != size or data != generation * (size // 8) or generation[:1] != name.encode():
        counts["partial"] += 1
    return generation[1:]

while not os.path.exists(stop):
    try:
        data_fd = os.open(os.path.join(directory, "..data"), os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        continue
    try:
        if read("A", data_fd) != read("B", data_fd):
            counts["mixed"] += 1
        counts["sets"] += 1
    except FileNotFoundError:
        counts["missing"] += 1  # the generation was removed after the swap: open ..data again
    finally:
        os.close(data_fd)
    for name in ("A", "B"):
        try:
            read(name)
        except FileNotFoundError:
            counts["missing"] += 1
print(json.dumps(counts))
"""


def test_a_hammering_reader_never_sees_a_partial_file_a_mixed_set_or_another_mode(
    secrets_dir: Path,
) -> None:
    import subprocess
    import sys
    import time

    size = 8 * 4096  # large enough that a torn write would show
    owner = me()

    def rotate(number: int) -> list[str]:
        files = [
            SecretFile(name, name, f"{name}{number:07d}".encode() * (size // 8), mode)
            for name, mode in (("A", 0o400), ("B", 0o440))
        ]
        directory = open_secret_directory(str(secrets_dir), owner)
        try:
            # As a refresh run writes: the replaced generation stays a moment.
            return write_secret_files(directory, files, owner, keep_previous=True)
        finally:
            directory.close()

    rotate(0)
    stop = secrets_dir.parent / "stop"
    reader = subprocess.Popen(
        [sys.executable, "-c", HAMMERING_READER, str(secrets_dir), str(stop), str(size)],
        stdout=subprocess.PIPE,
        text=True,
    )
    rotations = 300
    try:
        time.sleep(0.2)  # the reader is reading before the first rotation
        for number in range(1, rotations + 1):
            assert rotate(number) == ["A", "B"]
            time.sleep(0.005)  # a refresh period, shrunk: the reader runs between swaps
    finally:
        stop.touch()
        out, _ = reader.communicate(timeout=60)
    counts = json.loads(out)
    assert counts["sets"] > rotations, counts  # it did read all along the rotations
    assert counts["partial"] == 0, counts
    assert counts["mixed"] == 0, counts
    assert counts["mode"] == 0, counts
    # A reader stalled across two whole swaps may still miss a file (here,
    # with swaps 5 ms apart, rarely); removing the replaced generation at
    # once, one swap in ten or more made it miss (see the writer's docstring).
    assert counts["missing"] < rotations * 0.05, counts
    current = os.readlink(secrets_dir / DATA_LINK)
    assert len(generations(secrets_dir)) == 2 and current in generations(secrets_dir)
