"""Who the application runs as (``--user USER[:GROUP]``), as gosu resolves it."""

from __future__ import annotations

import grp
import os
import pwd
from typing import NamedTuple

from secretinit._errors import UsageError

MAX_ID = 2**32 - 2


class Identity(NamedTuple):
    """A uid, its primary gid, its supplementary groups and its home."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str
    label: str

    @property
    def is_current(self) -> bool:
        """Whether this process already runs as this identity."""
        return os.geteuid() == self.uid and os.getegid() == self.gid

    def with_group(self, group: str | None) -> int:
        """The gid of ``group`` (name or id), or this identity's primary gid."""
        return self.gid if group is None else _group_id(group)


def current_identity() -> Identity:
    """The identity this process runs as."""
    uid, gid = os.geteuid(), os.getegid()
    try:
        home = pwd.getpwuid(uid).pw_dir
    except KeyError:
        home = os.environ.get("HOME", "/")
    return Identity(uid, gid, tuple(os.getgroups()), home, str(uid))


def resolve_identity(spec: str) -> Identity:
    """Resolve ``USER[:GROUP]`` (names or numeric ids).

    A user with a passwd entry gets its primary group, its supplementary groups
    (only when no GROUP is given, as gosu and runc do) and its home. A numeric
    uid without an entry gets gid = GROUP, or the same number as the uid:
    never root's group by accident. ``HOME`` falls back to ``/``.
    """
    user, _, group = spec.partition(":")
    if not user or (":" in spec and not group):
        raise UsageError(f"--user {spec!r}: expected USER or USER:GROUP")
    entry: pwd.struct_passwd | None
    if user.isdigit():
        uid = _check_id(int(user), spec)
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            entry = None
    else:
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            raise UsageError(f"--user {spec!r}: no user named {user!r}") from None
        uid = entry.pw_uid
    if group:
        gid = _group_id(group)
        groups: tuple[int, ...] = (gid,)
    elif entry is not None:
        gid = entry.pw_gid
        groups = tuple(sorted(set(os.getgrouplist(entry.pw_name, gid))))
    else:
        gid = uid
        groups = (gid,)
    home = entry.pw_dir if entry is not None and entry.pw_dir else "/"
    return Identity(uid, gid, groups, home, spec)


def _group_id(group: str) -> int:
    if group.isdigit():
        return _check_id(int(group), group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise UsageError(f"no group named {group!r}") from None


def _check_id(number: int, spec: str) -> int:
    if number > MAX_ID:
        raise UsageError(f"{spec!r}: id {number} is out of range")
    return number
