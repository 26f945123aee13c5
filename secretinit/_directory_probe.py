"""Whether the secret directory could be used, found without writing a secret.

``fetch`` and ``run`` create the directory (and its parents), make it private
and write into it. ``check`` writes nothing, yet should fail where they would:
it makes a directory where the files would go and removes it at once, which
meets the same refusals (a read-only or pseudo filesystem, a missing
permission, a file in the way) with the same messages.
"""

from __future__ import annotations

import os

from secretinit._mounts import MEMORY_FILESYSTEMS, filesystem_type
from secretinit._writer import DEFAULT_DIR, SHARED_MEMORY, FileOwner, make_fresh_directory


def probe_directory(requested: str | None, owner: FileOwner) -> tuple[str, str | None, str | None]:
    """``(directory, filesystem, problem)`` for ``requested`` (None: the default one).

    ``directory`` says which directory a run would use, ``filesystem`` its
    type, ``problem`` why it could not be used (None when it could).
    """
    if requested is None:
        if filesystem_type(DEFAULT_DIR) in MEMORY_FILESYSTEMS:
            requested = DEFAULT_DIR
        else:
            # A fresh private directory under /dev/shm (else the temporary
            # directory), as a run makes one when /run/secretinit is on disk.
            parent = SHARED_MEMORY
            if not os.path.isdir(parent) or filesystem_type(parent) not in MEMORY_FILESYSTEMS:
                import tempfile  # only then: it costs more than the rest of a check's probe

                parent = tempfile.gettempdir()
            error = _try_directory(parent)
            problem = f"cannot create a secret directory under {parent}: {error}" if error else None
            return f"a private directory under {parent}", filesystem_type(parent), problem
    path = os.path.abspath(requested)
    return path, filesystem_type(path), _problem(path, owner)


def _problem(path: str, owner: FileOwner) -> str | None:
    if os.path.islink(path):
        return f"cannot use secret directory {path}: it is a symlink"
    if os.path.lexists(path):
        if not os.path.isdir(path):
            return f"cannot use secret directory {path}: it is not a directory"
        uid = os.stat(path).st_uid
        if uid != owner.uid and os.geteuid() != 0 and uid != os.geteuid():
            return (
                f"secret directory {path} belongs to uid {uid}; secretinit runs as uid "
                f"{os.geteuid()} and cannot make it private (mount it with uid={owner.uid})"
            )
        error = _try_directory(path)
        return f"cannot use secret directory {path}: {error}" if error else None
    ancestor = os.path.dirname(path)
    while not os.path.lexists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        return f"cannot create secret directory {path}: {ancestor} is not a directory"
    error = _try_directory(ancestor)
    return f"cannot create secret directory {path}: {error}" if error else None


def _try_directory(parent: str) -> str | None:
    """Why no directory can be made in ``parent`` (the OS's words), or None."""
    try:
        probe = make_fresh_directory(parent, ".secretinit-check-")
    except OSError as err:
        return err.strerror or type(err).__name__
    os.rmdir(probe)
    return None
