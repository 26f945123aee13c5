"""The secret directory and the files in it: private from the first byte, swapped as one set.

The layout is the kubelet's (``pkg/volume/util/atomic_writer.go``), so a
directory looks like a Kubernetes secret volume::

    NAME -> ..data/NAME       what NAME_FILE names: one path for the app's whole life
    ..data -> ..2025_01_31_12_00_00.5f2a9c0e71b3d4a8
    ..2025_01_31_12_00_00.5f2a9c0e71b3d4a8/NAME   a generation: the files themselves
    ..secretinit/             the private state of a refresh series (0700)

Every write, the start's and each refresh's, goes in the kubelet's order
(:func:`write_secret_files`):

1. every name is checked, and what stands at it: a directory there stops
   the run before anything is written;
2. the current generation (``..data``) is compared with the new set: the
   same files, bytes, modes and owners, and the right links, mean nothing
   is written at all;
3. a fresh generation directory is made with the directory's mode and owner
   (root does all of this with the owner's ids, :func:`acting_as`);
   each file is created in it ``O_CREAT|O_EXCL|O_NOFOLLOW`` with its final
   mode and owner before its first byte, written and fsynced, then the
   generation is fsynced;
4. with SIGTERM and SIGINT held: a symlink to the new generation, made at a
   temporary name, is renamed over ``..data``: the one atomic switch from
   the old set to the new, so a reader sees all the old files or all the
   new ones, each whole; then each ``NAME -> ..data/NAME`` that is not
   exactly that is made the same way (a symlink or file planted at NAME is
   replaced, never followed), names no longer written are removed, and the
   directory is fsynced;
5. every other generation, and any temporary file, is removed; a refresh
   run keeps the generation it replaced, which the supervisor removes a
   second later: a reader whose lookup of ``NAME -> ..data/NAME`` resolved
   ``..data`` just before the swap still finds its file (removed at once,
   a reader in a tight loop meets ENOENT in several percent of swaps).

A reader that wants a consistent set while files change opens ``..data``
once and reads each file relative to it, or reads after the
``--on-change`` signal; each file read through NAME is whole, of the old
set or the new. A failed write changes nothing a reader can see.
"""

from __future__ import annotations

import os
import signal
import stat
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple

from secretinit._capabilities import CHOWN, SETGID, SETUID, capability_hint
from secretinit._declaration import is_valid_file_name
from secretinit._errors import WriteFailed
from secretinit._log import log
from secretinit._mounts import MEMORY_FILESYSTEMS, filesystem_type
from secretinit._supervisor import (
    DATA_LINK,
    STATE_DIRECTORY,
    TEMPORARY_PREFIX,
    is_generation,
    remove_generation,
    remove_stale,
)

DEFAULT_DIR = "/run/secretinit"
SHARED_MEMORY = "/dev/shm"
PRIVATE_MODE = 0o600
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class FileOwner(NamedTuple):
    """Who owns the secret files: the application's uid, and the files' gid."""

    uid: int
    gid: int
    shared_group: bool = False  # a configured group: the directory becomes 0750

    @property
    def directory_mode(self) -> int:
        return 0o750 if self.shared_group else 0o700


class SecretFile(NamedTuple):
    """One file to write: for which secret, under which name, what, which mode."""

    secret: str
    name: str
    data: bytes
    mode: int

    def __repr__(self) -> str:
        return f"SecretFile(secret={self.secret!r}, name={self.name!r}, mode={self.mode:04o})"


class SecretDirectory:
    """An open, private secret directory. ``created``: made by this run."""

    def __init__(self, path: str, fd: int, created: bool, filesystem: str | None) -> None:
        self.path = path
        self.fd = fd
        self.created = created
        self.filesystem = filesystem
        #: A fresh random name nobody else knows: removed after the run.
        self.temporary = False

    def close(self) -> None:
        os.close(self.fd)


def open_secret_directory(
    requested: str | None, owner: FileOwner, warn: bool = True
) -> SecretDirectory:
    """Prepare ``requested`` (or the default) as a private directory of ``owner``.

    ``warn``: warn about a directory on disk (a refresh run does not repeat
    the start's warning every period).
    """
    directory = _prepare(requested, owner) if requested is not None else _default_directory(owner)
    if warn and directory.filesystem not in MEMORY_FILESYSTEMS:
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
    try:
        path = make_fresh_directory(parent, "secretinit-")
    except OSError as err:
        log("debug", f"not using {parent}: {err.strerror}", event="directory_skipped")
        tried.append(f"{parent}: {err.strerror}")
        return None
    directory = _prepare(path, owner, created=True)
    directory.temporary = True
    return directory


def make_fresh_directory(parent: str, prefix: str) -> str:
    """What tempfile.mkdtemp does (a new directory, mode 0700, a random name), without it.

    Importing tempfile costs more than the rest of a start's directory work.
    Raises the OSError of mkdir(2), or one saying that no free name was found.
    """
    for _attempt in range(100):
        path = os.path.join(parent, f"{prefix}{os.urandom(6).hex()}")
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(17, "no free name", parent)  # EEXIST


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
    directory: SecretDirectory,
    files: Sequence[SecretFile],
    owner: FileOwner,
    keep_previous: bool = False,
) -> list[str]:
    """Make ``files`` the directory's set, all at once, or change nothing when it holds them.

    Returns the secrets whose file changed (new, other bytes, mode or owner,
    or a wrong link at its name), in ``files``' order; empty when nothing
    was written. The steps are in the module docstring. ``keep_previous``
    (a refresh run): the generation just replaced stays for the supervisor
    to remove a moment later, so that a reader whose lookup of
    ``NAME -> ..data/NAME`` passed through it meanwhile still finds the file.
    As root, all of it is done with the owner's ids (:func:`acting_as`).
    """
    with acting_as(owner):
        return _write_set(directory, files, owner, keep_previous)


def _write_set(
    directory: SecretDirectory,
    files: Sequence[SecretFile],
    owner: FileOwner,
    keep_previous: bool,
) -> list[str]:
    for secret_file in files:
        _check_target(directory, secret_file)
    _check_not_a_directory(directory, DATA_LINK, "the secret directory's ..data link")
    names = {secret_file.name for secret_file in files}
    # Read once: nothing but this write changes the directory's links meanwhile.
    links = _links(directory.fd)
    previous = links.get(DATA_LINK)
    current = _open_generation(directory.fd, previous)
    # The names linked into ..data: the files of the current set.
    obsolete = [
        name
        for name, target in links.items()
        if target == f"{DATA_LINK}/{name}" and name not in names
    ]
    try:
        changed = [
            f.secret
            for f in files
            if current is None
            or links.get(f.name) != f"{DATA_LINK}/{f.name}"
            or not _holds(current, f, owner)
        ]
        unchanged = (
            current is not None
            and not changed
            and not obsolete
            and set(os.listdir(current)) == names
        )
    finally:
        if current is not None:
            os.close(current)
    if unchanged:
        return []
    generation = _write_generation(directory, files, owner)
    with held_stop_signals():
        try:
            _link(directory, DATA_LINK, generation, owner)
        except OSError as err:
            _remove_quietly(directory.fd, generation)
            raise WriteFailed(
                f"cannot switch {directory.path} to the new files: {err.strerror}"
            ) from None
        for secret_file in files:
            target = f"{DATA_LINK}/{secret_file.name}"
            if links.get(secret_file.name) != target:
                try:
                    _link(directory, secret_file.name, target, owner)
                except OSError as err:
                    raise _write_error(directory, secret_file, err) from None
        for name in obsolete:
            _unlink_quietly(directory.fd, name)
        os.fsync(directory.fd)
    for name in remove_stale(directory.fd, previous if keep_previous else None):
        log(
            "warning",
            f"cannot remove {name} from {directory.path}: a stale generation stays",
            event="stale_generation",
            dir=directory.path,
        )
    return changed


def open_state_directory(directory: SecretDirectory, owner: FileOwner) -> SecretDirectory:
    """The private state directory (``..secretinit``, 0700) of ``directory``, opened.

    Made if needed; a symlink there is refused, not followed. It is the
    owner's (the application's user, who runs the refreshes), and never the
    group's, even when the files are: it holds the start's environment.
    """
    with acting_as(owner):
        return _open_state_directory(directory, owner)


def _open_state_directory(directory: SecretDirectory, owner: FileOwner) -> SecretDirectory:
    path = os.path.join(directory.path, STATE_DIRECTORY)
    created = False
    try:
        os.mkdir(STATE_DIRECTORY, 0o700, dir_fd=directory.fd)
        created = True
    except FileExistsError:
        pass
    except OSError as err:
        raise WriteFailed(f"cannot create {path}: {err.strerror}") from None
    try:
        fd = os.open(STATE_DIRECTORY, _DIRECTORY_FLAGS, dir_fd=directory.fd)
    except OSError as err:
        reason = "it is a symlink" if err.errno == 40 else err.strerror  # ELOOP
        raise WriteFailed(f"cannot use {path}: {reason}") from None
    try:
        info = os.fstat(fd)
        if info.st_uid != owner.uid and os.geteuid() != 0:
            raise WriteFailed(f"{path} belongs to uid {info.st_uid}, not to uid {owner.uid}")
        if info.st_uid != owner.uid:  # root made it, for the user who runs the refreshes
            os.fchown(fd, owner.uid, -1)
        if stat.S_IMODE(info.st_mode) != 0o700:
            os.fchmod(fd, 0o700)
    except OSError as err:
        os.close(fd)
        raise WriteFailed(f"cannot make {path} private: {err.strerror}") from None
    except BaseException:
        os.close(fd)
        raise
    return SecretDirectory(path, fd, created, directory.filesystem)


def write_private_file(
    directory: SecretDirectory, name: str, data: bytes, owner: FileOwner
) -> None:
    """Replace file ``name`` of ``directory`` (mode 0600) atomically: state, not secrets."""
    temporary = _temporary_name()
    with acting_as(owner):  # as root, the owner's file in the owner's directory
        try:
            _create(directory.fd, temporary, data, PRIVATE_MODE, owner)
            os.rename(temporary, name, src_dir_fd=directory.fd, dst_dir_fd=directory.fd)
        except OSError as err:
            _unlink_quietly(directory.fd, temporary)
            raise WriteFailed(
                f"cannot write {os.path.join(directory.path, name)}: {err.strerror}"
            ) from None
    os.fsync(directory.fd)


def _check_target(directory: SecretDirectory, secret_file: SecretFile) -> None:
    # The declaration already refused such names; the writer refuses them too
    # because it is the last line before the filesystem.
    if not is_valid_file_name(secret_file.name):
        raise WriteFailed(f"secret {secret_file.secret}: {secret_file.name!r} is not one file name")
    try:
        _check_not_a_directory(directory, secret_file.name, "")
    except OSError as err:
        raise _write_error(directory, secret_file, err) from None


def _check_not_a_directory(directory: SecretDirectory, name: str, what: str) -> None:
    try:
        info = os.stat(name, dir_fd=directory.fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    except OSError as err:
        if not what:
            raise
        raise WriteFailed(f"cannot use {what} in {directory.path}: {err.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        if not what:
            raise IsADirectoryError(21, "Is a directory")
        raise WriteFailed(f"cannot use {what}: {directory.path}/{name} is a directory")


def _open_generation(dir_fd: int, target: str | None) -> int | None:
    """The generation ``..data`` names (``target``), opened; None when none (or not ours)."""
    if target is None or not is_generation(target):
        return None
    try:
        # O_NOFOLLOW: the generation itself must be a directory, not a link onwards.
        return os.open(target, _DIRECTORY_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None


def _holds(generation_fd: int, secret_file: SecretFile, owner: FileOwner) -> bool:
    """Whether the current generation holds ``secret_file`` exactly."""
    try:
        fd = os.open(
            secret_file.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=generation_fd
        )
    except OSError:
        return False
    try:
        info = os.fstat(fd)
        if (
            not stat.S_ISREG(info.st_mode)
            or stat.S_IMODE(info.st_mode) != secret_file.mode
            or (info.st_uid, info.st_gid) != (owner.uid, owner.gid)
            or info.st_size != len(secret_file.data)
        ):
            return False
        return _read_exactly(fd, info.st_size) == secret_file.data
    except OSError:
        return False
    finally:
        os.close(fd)


def _read_exactly(fd: int, size: int) -> bytes:
    chunks = []
    while size > 0 and (chunk := os.read(fd, size)):
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _links(dir_fd: int) -> dict[str, str]:
    """Every symlink of the directory, by name, and its target."""
    found = {}
    for name in os.listdir(dir_fd):
        target = _read_link(dir_fd, name)
        if target is not None:
            found[name] = target
    return found


def _read_link(dir_fd: int, name: str) -> str | None:
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except OSError:  # absent, or not a link
        return None


def _write_generation(
    directory: SecretDirectory, files: Sequence[SecretFile], owner: FileOwner
) -> str:
    """A new generation directory holding ``files``, fsynced; its name."""
    stamp = time.strftime("%Y_%m_%d_%H_%M_%S", time.gmtime())
    name = f"..{stamp}.{os.urandom(8).hex()}"
    try:
        os.mkdir(name, 0o700, dir_fd=directory.fd)
        fd = os.open(name, _DIRECTORY_FLAGS, dir_fd=directory.fd)
    except OSError as err:
        raise WriteFailed(
            f"cannot write a new set of files in {directory.path}: {err.strerror}"
        ) from None
    try:
        try:
            os.fchmod(fd, owner.directory_mode)  # the umask may have narrowed mkdir's mode
            _give(fd, owner)
        except OSError as err:
            raise WriteFailed(
                f"cannot write a new set of files in {directory.path}: {err.strerror}"
            ) from None
        for secret_file in files:
            try:
                _create(fd, secret_file.name, secret_file.data, secret_file.mode, owner)
            except OSError as err:
                raise _write_error(directory, secret_file, err) from None
        os.fsync(fd)
    except BaseException:  # an error, or a stop signal: nothing staged stays behind
        os.close(fd)
        _remove_quietly(directory.fd, name)
        raise
    os.close(fd)
    return name


def _create(dir_fd: int, name: str, data: bytes, mode: int, owner: FileOwner) -> None:
    """Create ``name`` with ``mode`` and ``owner`` before its first byte; write and fsync it."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(name, flags, mode, dir_fd=dir_fd)
    try:
        # The umask can only have narrowed the mode; set it exactly, still
        # before a single byte is written.
        os.fchmod(fd, mode)
        _give(fd, owner)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quietly(dir_fd, name)
        raise
    os.close(fd)


def _give(fd: int, owner: FileOwner) -> None:
    """Make ``fd`` the owner's: root gives it away; anyone may set a group it is in."""
    info = os.fstat(fd)
    if (info.st_uid, info.st_gid) != (owner.uid, owner.gid):
        os.fchown(fd, owner.uid if os.geteuid() == 0 else -1, owner.gid)


def _link(directory: SecretDirectory, name: str, target: str, owner: FileOwner) -> None:
    """Make ``name`` a symlink to ``target`` by renaming a fresh one over whatever is there."""
    temporary = _temporary_name()
    os.symlink(target, temporary, dir_fd=directory.fd)
    try:
        if os.geteuid() == 0:
            os.chown(temporary, owner.uid, owner.gid, dir_fd=directory.fd, follow_symlinks=False)
        os.rename(temporary, name, src_dir_fd=directory.fd, dst_dir_fd=directory.fd)
    except BaseException:
        _unlink_quietly(directory.fd, temporary)
        raise


def _temporary_name() -> str:
    return f"{TEMPORARY_PREFIX}{os.urandom(8).hex()}.tmp"


@contextmanager
def held_stop_signals() -> Iterator[None]:
    """Hold SIGTERM and SIGINT for a moment; act on them afterwards.

    A stop signal raises in the main thread wherever it runs; between the
    switch of ``..data`` and the last link it would leave a name without
    its link. Outside the main thread no handler can run, so nothing is held.
    Nested, the inner one hands what it held to the outer one.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    stops = (signal.SIGTERM, signal.SIGINT)
    previous = {number: signal.signal(number, lambda n, _f: received.append(n)) for number in stops}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for held in received:
            handler = previous[signal.Signals(held)]
            if callable(handler):
                handler(held, None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), held)


def _write_error(directory: SecretDirectory, secret_file: SecretFile, err: OSError) -> WriteFailed:
    target = os.path.join(directory.path, secret_file.name)
    reason = err.strerror or type(err).__name__
    if isinstance(err, IsADirectoryError) or err.errno == 39:  # ENOTEMPTY
        reason = "a directory is in the way"
    return WriteFailed(f"secret {secret_file.secret}: cannot write {target}: {reason}")


def _remove_quietly(dir_fd: int, generation: str) -> None:
    try:
        remove_generation(dir_fd, generation)
    except OSError:
        pass  # the next write removes it with the other stale entries


def _unlink_quietly(dir_fd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass
