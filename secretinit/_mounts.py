"""Which filesystem holds a path, read from the kernel's mount table."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})
MOUNTINFO = "/proc/self/mountinfo"
_ESCAPE = re.compile(r"\\([0-7]{3})")


def filesystem_type(path: str) -> str | None:
    """The type (``tmpfs``, ``ext4``, ...) of the mount holding ``path``, if known.

    ``path`` need not exist: its nearest existing ancestor decides, which is
    where it would be created.
    """
    target = os.path.realpath(path)
    while not os.path.exists(target) and target != "/":
        target = os.path.dirname(target)
    try:
        with open(MOUNTINFO, encoding="utf-8", errors="replace") as table:
            return mount_type(target, table.read().splitlines())
    except OSError:
        return None


def mount_type(target: str, mountinfo: Iterable[str]) -> str | None:
    """The filesystem type of the deepest mount in ``mountinfo`` holding ``target``."""
    best: tuple[int, str] | None = None
    for line in mountinfo:
        before, separator, after = line.partition(" - ")
        fields = before.split()
        if not separator or len(fields) < 5 or not after:
            continue
        mount_point = _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), fields[4])
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        # A later line for the same or a deeper mount point is mounted over the earlier one.
        if inside and (best is None or len(mount_point) >= best[0]):
            best = (len(mount_point), after.split()[0])
    return best[1] if best else None
