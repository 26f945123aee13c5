"""Which engine serves a path: KV version 1 or 2 (so users never type ``data/``), or another.

Vault's own CLI asks ``sys/internal/ui/mounts/PATH`` for the same reason; the
answer names the mount, so one question serves every path under it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from secretinit import FetchError, NotFound
from secretinit_vault._log import debug

# Runs a function on each item concurrently; an item that failed maps to its FetchError.
Parallel = Callable[[Callable[[str], "Mount"], Sequence[str]], dict[str, "Mount | FetchError"]]


@dataclass(frozen=True)
class Mount:
    """A mount: its path as Vault names it (``secret/``) and its KV version, if KV."""

    path: str
    kv_version: str | None  # "1", "2", or None for any other engine


class MountTable:
    """The mounts seen so far in this run, and the way to find the rest."""

    def __init__(self) -> None:
        self._mounts: dict[str, Mount] = {}

    def find(
        self, client: Any, locations: set[str], parallel: Parallel
    ) -> dict[str, Mount | FetchError]:
        """The mount of each location, asking Vault once per mount where it can.

        One location per first path segment is asked first. A failure there
        (a rejected token, a sealed server) stands for every location sharing
        the segment, so a bad token costs one request, not one per path.
        Locations left uncovered (nested mounts, a path with no mount) are
        asked one by one.
        """
        found: dict[str, Mount | FetchError] = {}
        pending = sorted(loc for loc in locations if not self._covering(loc))
        first = {loc.split("/", 1)[0]: loc for loc in reversed(pending)}
        failed: dict[str, FetchError] = {}
        probes = parallel(lambda loc: self._probe(client, loc), list(first.values()))
        for loc, answer in probes.items():
            found[loc] = answer
            if isinstance(answer, FetchError):
                failed[loc.split("/", 1)[0]] = answer
        rest = []
        for loc in pending:
            if loc in found or self._covering(loc):
                continue
            if loc.split("/", 1)[0] in failed:
                found[loc] = failed[loc.split("/", 1)[0]]
            else:
                rest.append(loc)
        found.update(parallel(lambda loc: self._probe(client, loc), rest))
        for loc in locations:
            covering = self._covering(loc)
            if covering is not None and not isinstance(found.get(loc), FetchError):
                found[loc] = covering
            found.setdefault(loc, Mount(loc, None))
        return found

    def _covering(self, location: str) -> Mount | None:
        matches = [m for path, m in self._mounts.items() if (location + "/").startswith(path)]
        return max(matches, key=lambda m: len(m.path), default=None)

    def _probe(self, client: Any, location: str) -> Mount:
        try:
            response = client.adapter.get(f"/v1/sys/internal/ui/mounts/{quote(location)}")
        except Exception as err:
            if "preflight capability check" in str(err):
                # No mount here, or a token with no access to it: reading the
                # path as a generic secret gives the precise error.
                debug(
                    f"vault: no mount visible for {location}: read as a plain path",
                    "vault_mount",
                    path=location,
                )
                return Mount(location, None)
            raise
        data = field(response, "data", f"the mount of {location}")
        options = data.get("options") or {}
        kv = data.get("type") in ("kv", "generic")
        mount = Mount(str(data.get("path", "")), str(options.get("version", "1")) if kv else None)
        if not mount.path:
            raise FetchError(f"Vault named no mount for {location}")
        self._mounts[mount.path] = mount
        engine = f"KV version {mount.kv_version}" if kv else f"engine {data.get('type')}"
        debug(
            f"vault: {location} is on the mount {mount.path} ({engine})",
            "vault_mount",
            path=location,
        )
        return mount


def field(response: Any, name: str, what: str) -> dict[str, Any]:
    """``response[name]``, which must be a JSON object."""
    if not isinstance(response, dict):
        raise FetchError(f"{what}: Vault's answer is not a JSON object (is VAULT_ADDR Vault?)")
    value = response.get(name)
    if not isinstance(value, dict):
        raise NotFound(f"{what} holds no data")
    return value
