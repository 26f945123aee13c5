"""The secret directory and the files in it: private from the first byte.

Every file is written through a fresh temporary name in the same directory,
opened with ``O_CREAT|O_EXCL|O_NOFOLLOW`` and its final mode, so no reader
ever sees a half-written or over-readable secret, and a symlink planted at a
temporary or final name cannot redirect a write. Files are staged first and
renamed into place only when every one of them was written: a failed run
changes nothing.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from secretinit._capabilities import CHOWN, SETGID, SETUID, capability_hint
from secretinit._declaration import is_valid_file_name
from secretinit._errors import WriteFailed
from secretinit._log import log
from secretinit._mounts import MEMORY_FILESYSTEMS, filesystem_type

DEFAULT_DIR = "/run/secretinit"
SHARED_MEMORY = "/dev/shm"
TEMPORARY_PREFIX = ".secretinit-"


@dataclass(frozen=True)
class FileOwner:
    """Who owns the secret files: the application's uid, and the files' gid."""

    uid: int
    gid: int
    shared_group: bool = False  # a configured group: the directory becomes 0750

    @property
    def directory_mode(self) -> int:
        return 0o750 if self.shared_group else 0o700


@dataclass(frozen=True)
class SecretFile:
    """One file to write: for which secret, under which name, what, which mode."""

    secret: str
    name: str
    data: bytes
    mode: int

    def __repr__(self) -> str:
        return f"SecretFile(secret={self.secret!r}, name={self.name!r}, mode={self.mode:04o})"


@dataclass
class SecretDirectory:
    """An open, private secret directory. ``created``: made by this run."""

    path: str
    fd: int
    created: bool
    filesystem: str | None
    temporary: bool = False  # a fresh random name nobody else knows: removed after the run

    def close(self) -> None:
        os.close(self.fd)


def open_secret_directory(requested: str | None, owner: FileOwner) -> SecretDirectory:
    """Prepare ``requested`` (or the default) as a private directory of ``owner``."""
    directory = _prepare(requested, owner) if requested is not None else _default_directory(owner)
    if directory.filesystem not in MEMORY_FILESYSTEMS:
        log(
            "warning",
            f"secret directory {directory.path} is on {directory.filesystem or 'an unknown'} "
            "filesystem, not in memory: secrets will reach the disk; mount a tmpfs there",
            event="directory_on_disk",
            dir=directory.path,
            filesystem=directory.filesystem,
        )
    return directory


def _default_directory(owner: FileOwner) -> SecretDirectory:
    # /run/secretinit when it is in memory (a tmpfs mounted on it or on /run),
    # else a fresh private directory under /dev/shm (as in a Docker container,
    # whose /run is on the image's disk), else the disk with a warning. The
    # temporary directory is looked for only when /dev/shm cannot serve: under
    # a read-only root file system (Docker's --read-only, Kubernetes'
    # readOnlyRootFilesystem) /dev/shm is writable and /tmp is not.
    tried: list[str] = []
    if filesystem_type(DEFAULT_DIR) in MEMORY_FILESYSTEMS:
        try:
            return _prepare(DEFAULT_DIR, owner)
        except WriteFailed as err:
            log("debug", f"not using {DEFAULT_DIR}: {err}", event="directory_skipped")
            tried.append(str(err))
    else:
        tried.append(f"{DEFAULT_DIR} is not in memory")
    if not os.path.isdir(SHARED_MEMORY):
        tried.append(f"there is no {SHARED_MEMORY}")
    elif filesystem_type(SHARED_MEMORY) not in MEMORY_FILESYSTEMS:
        tried.append(f"{SHARED_MEMORY} is not in memory")
    else:
        directory = _private_directory_under(SHARED_MEMORY, owner, tried)
        if directory is not None:
            return directory
    import tempfile  # only on this path: it costs start-up time

    try:
        # It creates and removes a probe file in each candidate: a read-only
        # /tmp, /var/tmp and working directory make it raise.
        temporary = tempfile.gettempdir()
    except OSError:
        tried.append("no temporary directory is writable")
    else:
        directory = _private_directory_under(temporary, owner, tried)
        if directory is not None:
            return directory
    raise WriteFailed(
        "no directory for secrets could be created ("
        + "; ".join(tried)
        + f"): mount a tmpfs at {DEFAULT_DIR} or give one with --dir"
    )


def _private_directory_under(
    parent: str, owner: FileOwner, tried: list[str]
) -> SecretDirectory | None:
    """A fresh directory with a random name under ``parent``; None (and why in ``tried``)."""
    for _attempt in range(100):
        path = os.path.join(parent, f"secretinit-{os.urandom(6).hex()}")
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        except OSError as err:
            log("debug", f"not using {parent}: {err.strerror}", event="directory_skipped")
            tried.append(f"{parent}: {err.strerror}")
            return None
        directory = _prepare(path, owner, created=True)
        directory.temporary = True
        return directory
    tried.append(f"{parent}: no free name")
    return None


def _prepare(path: str, owner: FileOwner, created: bool = False) -> SecretDirectory:
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    if os.path.lexists(parent) and not os.path.isdir(parent):
        raise WriteFailed(f"cannot create secret directory {path}: {parent} is not a directory")
    try:
        os.makedirs(parent, mode=0o755, exist_ok=True)
    except OSError as err:
        raise WriteFailed(f"cannot create secret directory {path}: {err.strerror}") from None
    try:
        os.mkdir(path, 0o700)
        created = True
    except FileExistsError:
        pass  # made private below, whoever made it
    except OSError as err:
        raise WriteFailed(f"cannot create secret directory {path}: {err.strerror}") from None
    try:
        # O_NOFOLLOW: a symlink planted at the directory's name is refused,
        # not followed somewhere the attacker chose. O_PATH: root may lack
        # the right to read a directory that another user owns (no
        # DAC_OVERRIDE), yet must be able to take exactly this one.
        handle = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        reason = "it is a symlink" if os.path.islink(path) else err.strerror
        raise WriteFailed(f"cannot use secret directory {path}: {reason}") from None
    try:
        fd = _make_private(handle, path, owner)
    finally:
        os.close(handle)
    return SecretDirectory(path, fd, created, filesystem_type(path))


def _make_private(handle: int, path: str, owner: FileOwner) -> int:
    """Give the directory behind ``handle`` (O_PATH) to ``owner``, mode included; open it.

    The order keeps root's needs to the CHOWN capability: the owner changes
    first, then the mode is set and the directory opened as that owner, where
    root itself would need FOWNER and DAC_OVERRIDE on a directory it no
    longer owns. ``/proc/self/fd/N`` names exactly the inode of ``handle``,
    whatever happens to ``path`` meanwhile.
    """
    inode = f"/proc/self/fd/{handle}"
    if not os.path.exists(inode):
        raise WriteFailed(f"cannot prepare secret directory {path}: /proc is not mounted")
    info = os.fstat(handle)
    if (info.st_uid, info.st_gid) != (owner.uid, owner.gid):
        if os.geteuid() != 0 and info.st_uid != os.geteuid():
            raise WriteFailed(
                f"secret directory {path} belongs to uid {info.st_uid}; secretinit runs as "
                f"uid {os.geteuid()} and cannot make it private (mount it with uid={owner.uid})"
            )
        try:
            os.chown(inode, owner.uid if os.geteuid() == 0 else -1, owner.gid)
        except OSError as err:
            raise WriteFailed(
                f"cannot give {path} to {owner.uid}:{owner.gid}: {err.strerror}"
                + capability_hint(CHOWN)
            ) from None
    with acting_as(owner):
        if stat.S_IMODE(info.st_mode) != owner.directory_mode:
            try:
                os.chmod(inode, owner.directory_mode)
            except OSError as err:
                raise WriteFailed(f"cannot make {path} private: {err.strerror}") from None
        try:
            return os.open(inode, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as err:
            raise WriteFailed(f"cannot use secret directory {path}: {err.strerror}") from None


@contextmanager
def acting_as(owner: FileOwner) -> Iterator[None]:
    """As root, act with the owner's effective ids; elsewhere do nothing.

    Root writes the files as their owner (``seteuid``, as a file server does)
    rather than as itself: each file is the owner's from its creation, and
    root needs neither DAC_OVERRIDE to write into the owner's private
    directory nor CHOWN per file, only the SETUID and SETGID capabilities
    that dropping root to ``--user`` needs anyway. The real and saved ids stay
    root's, so no process of the owner's may signal or trace this one
    meanwhile (the kernel also makes it non-dumpable while the ids differ).
    """
    euid, egid = os.geteuid(), os.getegid()
    if euid != 0 or (owner.uid, owner.gid) == (euid, egid):
        yield
        return
    try:
        os.setegid(owner.gid)  # the group first: without root it could not change any more
    except OSError as err:
        raise WriteFailed(
            f"cannot act as group {owner.gid} to write its files: {err.strerror}"
            + capability_hint(SETGID)
        ) from None
    try:
        try:
            os.seteuid(owner.uid)
        except OSError as err:
            raise WriteFailed(
                f"cannot act as uid {owner.uid} to write its files: {err.strerror}"
                + capability_hint(SETUID)
            ) from None
        try:
            yield
        finally:
            os.seteuid(euid)
    finally:
        os.setegid(egid)


def write_secret_files(
    directory: SecretDirectory, files: Sequence[SecretFile], owner: FileOwner
) -> None:
    """Write every file atomically, or none: stage all, then rename all."""
    with acting_as(owner):
        for secret_file in files:
            _check_target(directory, secret_file)
        _write_staged(directory, files)


def _write_staged(directory: SecretDirectory, files: Sequence[SecretFile]) -> None:
    staged: list[tuple[str, SecretFile]] = []
    try:
        for secret_file in files:
            staged.append((_stage(directory, secret_file), secret_file))
        while staged:
            temporary, secret_file = staged[0]
            try:
                os.rename(
                    temporary, secret_file.name, src_dir_fd=directory.fd, dst_dir_fd=directory.fd
                )
            except OSError as err:
                raise _write_error(directory, secret_file, err) from None
            staged.pop(0)
        os.fsync(directory.fd)
    finally:
        for temporary, _ in staged:
            _unlink_quietly(directory.fd, temporary)


def _check_target(directory: SecretDirectory, secret_file: SecretFile) -> None:
    # The declaration already refused such names; the writer refuses them too
    # because it is the last line before the filesystem.
    if not is_valid_file_name(secret_file.name):
        raise WriteFailed(f"secret {secret_file.secret}: {secret_file.name!r} is not one file name")
    try:
        info = os.stat(secret_file.name, dir_fd=directory.fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    except OSError as err:
        raise _write_error(directory, secret_file, err) from None
    if stat.S_ISDIR(info.st_mode):
        raise _write_error(directory, secret_file, IsADirectoryError(21, "Is a directory"))


def _stage(directory: SecretDirectory, secret_file: SecretFile) -> str:
    temporary = f"{TEMPORARY_PREFIX}{os.urandom(8).hex()}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(temporary, flags, secret_file.mode, dir_fd=directory.fd)
    except OSError as err:
        raise _write_error(directory, secret_file, err) from None
    try:
        # The umask can only have narrowed the mode; set it exactly, still
        # before a single byte is written.
        os.fchmod(fd, secret_file.mode)
        view = memoryview(secret_file.data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except OSError as err:
        os.close(fd)
        _unlink_quietly(directory.fd, temporary)
        raise _write_error(directory, secret_file, err) from None
    os.close(fd)
    return temporary


def _write_error(directory: SecretDirectory, secret_file: SecretFile, err: OSError) -> WriteFailed:
    target = os.path.join(directory.path, secret_file.name)
    reason = err.strerror or type(err).__name__
    if isinstance(err, IsADirectoryError) or err.errno == 39:  # ENOTEMPTY
        reason = "a directory is in the way"
    return WriteFailed(f"secret {secret_file.secret}: cannot write {target}: {reason}")


def _unlink_quietly(dir_fd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass
