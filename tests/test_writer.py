"""The secret directory and its files: modes, owners, atomicity, hostile names."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from secretinit import WriteFailed
from secretinit._log import configure_logging
from secretinit._mounts import filesystem_type, mount_type
from secretinit._writer import (
    TEMPORARY_PREFIX,
    FileOwner,
    SecretFile,
    open_secret_directory,
    write_secret_files,
)

NOBODY = 65534


@pytest.fixture
def memory_dir(shared_dir: Path) -> Iterator[Path]:
    """A path on /dev/shm (a tmpfs) for the secret directory."""
    import shutil
    import tempfile

    parent = Path(tempfile.mkdtemp(prefix="secretinit-writer-", dir="/dev/shm"))
    try:
        yield parent / "secrets"
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def me() -> FileOwner:
    return FileOwner(os.geteuid(), os.getegid())


def write(path: Path, *files: SecretFile, owner: FileOwner | None = None) -> None:
    owner = owner or me()
    directory = open_secret_directory(str(path), owner)
    try:
        write_secret_files(directory, files, owner)
    finally:
        directory.close()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_files_are_private_from_the_start(memory_dir: Path) -> None:
    previous = os.umask(0o022)
    try:
        write(
            memory_dir,
            SecretFile("A", "A", b"alpha", 0o400),
            SecretFile("B", "b.key", b"\x00binary\xff", 0o440),
        )
    finally:
        os.umask(previous)
    assert mode(memory_dir) == 0o700
    assert (memory_dir / "A").read_bytes() == b"alpha"
    assert mode(memory_dir / "A") == 0o400
    assert (memory_dir / "b.key").read_bytes() == b"\x00binary\xff"
    assert mode(memory_dir / "b.key") == 0o440
    assert sorted(p.name for p in memory_dir.iterdir()) == ["A", "b.key"]
    assert filesystem_type(str(memory_dir)) == "tmpfs"


def test_rewriting_replaces_atomically(memory_dir: Path) -> None:
    write(memory_dir, SecretFile("A", "A", b"one", 0o400))
    before = (memory_dir / "A").stat().st_ino
    write(memory_dir, SecretFile("A", "A", b"two", 0o400))
    assert (memory_dir / "A").read_bytes() == b"two"
    assert (memory_dir / "A").stat().st_ino != before  # a new file renamed over, never rewritten


def test_symlink_at_the_target_is_replaced_not_followed(memory_dir: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    memory_dir.mkdir(mode=0o700)
    (memory_dir / "A").symlink_to(victim)
    write(memory_dir, SecretFile("A", "A", b"secret", 0o400))
    assert victim.read_text() == "untouched"
    assert not (memory_dir / "A").is_symlink()
    assert (memory_dir / "A").read_bytes() == b"secret"


def test_symlink_as_the_directory_is_refused(memory_dir: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    memory_dir.parent.mkdir(exist_ok=True)
    memory_dir.symlink_to(elsewhere)
    with pytest.raises(WriteFailed, match="it is a symlink"):
        write(memory_dir, SecretFile("A", "A", b"secret", 0o400))
    assert list(elsewhere.iterdir()) == []


def test_directory_in_the_way_writes_nothing(memory_dir: Path) -> None:
    memory_dir.mkdir(mode=0o700)
    (memory_dir / "B").mkdir()
    with pytest.raises(
        WriteFailed, match=r"secret B: cannot write .*/B: a directory is in the way"
    ):
        write(memory_dir, SecretFile("A", "A", b"a", 0o400), SecretFile("B", "B", b"b", 0o400))
    assert sorted(p.name for p in memory_dir.iterdir()) == ["B"]  # A was not written either


@pytest.mark.parametrize("name", ["..", ".", "a/b", "../escape", "/etc/passwd", ""])
def test_names_that_leave_the_directory_are_refused(memory_dir: Path, name: str) -> None:
    with pytest.raises(WriteFailed, match="is not one file name"):
        write(memory_dir, SecretFile("X", name, b"x", 0o400))
    assert not (memory_dir.parent / "escape").exists()


def test_a_failed_write_leaves_no_temporary_file(memory_dir: Path) -> None:
    memory_dir.mkdir(mode=0o700)
    (memory_dir / "C").mkdir()
    with pytest.raises(WriteFailed):
        write(memory_dir, SecretFile("A", "A", b"a", 0o400), SecretFile("C", "C", b"c", 0o400))
    assert not [p for p in memory_dir.iterdir() if p.name.startswith(TEMPORARY_PREFIX)]


def test_existing_directory_is_made_private(memory_dir: Path) -> None:
    memory_dir.mkdir()
    memory_dir.chmod(0o1777)
    write(memory_dir, SecretFile("A", "A", b"a", 0o400))
    assert mode(memory_dir) == 0o700


def test_group_owner_opens_the_directory_to_the_group(memory_dir: Path) -> None:
    owner = FileOwner(os.geteuid(), os.getegid(), shared_group=True)
    write(memory_dir, SecretFile("A", "A", b"a", 0o440), owner=owner)
    assert mode(memory_dir) == 0o750


@pytest.mark.usefixtures("require_root")
def test_files_belong_to_the_application_user(memory_dir: Path) -> None:
    owner = FileOwner(NOBODY, NOBODY)
    write(memory_dir, SecretFile("A", "A", b"a", 0o400), owner=owner)
    for path in (memory_dir, memory_dir / "A"):
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


def test_a_path_to_be_created_is_judged_by_its_parent(memory_dir: Path) -> None:
    assert filesystem_type(str(memory_dir / "not" / "yet")) == "tmpfs"
