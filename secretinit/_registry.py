"""Which provider handles which scheme, imported only when a secret names it.

Providers register in the ``secretinit.providers`` entry-point group under
their scheme. The two built-in schemes resolve without scanning installed
distributions (that scan costs more than the rest of an env-file start); any
other scheme triggers one scan. A scheme that nothing installed handles says
which distribution to install, when one is known.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from secretinit._errors import UnknownScheme

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    from secretinit._provider import Provider

ENTRY_POINT_GROUP = "secretinit.providers"

BUILTIN: dict[str, str] = {
    "env-file": "secretinit._env_file:EnvFileProvider",
    "docker-secret": "secretinit._docker_secret:DockerSecretProvider",
}

# Schemes of the first-party providers that live in their own distributions,
# so that a missing one can be named even when it is not installed.
KNOWN_DISTRIBUTIONS: dict[str, str] = {
    "vault": "secretinit-vault",
    "aws-sm": "secretinit-aws",
    "aws-ssm": "secretinit-aws",
    "azure-kv": "secretinit-azure",
}


@dataclass(frozen=True)
class InstalledProvider:
    """One registered scheme, as ``secretinit providers`` lists it."""

    scheme: str
    target: str
    distribution: str
    version: str


class ProviderRegistry:
    """The scheme -> provider table, scanned at most once and only if needed."""

    def __init__(self) -> None:
        self._entry_points: dict[str, EntryPoint] | None = None

    def _installed_entry_points(self) -> dict[str, EntryPoint]:
        if self._entry_points is None:
            from importlib.metadata import entry_points

            self._entry_points = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
        return self._entry_points

    def handles(self, scheme: str) -> bool:
        """Whether ``scheme`` names a secret store (installed or known).

        A known but missing provider still counts, so that
        ``DB_PASSWORD=vault://...`` without ``secretinit-vault`` is an error
        that names the distribution, not a value silently passed through.
        """
        if scheme in BUILTIN or scheme in KNOWN_DISTRIBUTIONS:
            return True
        return scheme in self._installed_entry_points()

    def load(self, scheme: str) -> type[Provider]:
        """Import and return the provider class for ``scheme``."""
        from secretinit._provider import Provider

        if scheme in BUILTIN:
            module_name, _, attribute = BUILTIN[scheme].partition(":")
            cls = getattr(importlib.import_module(module_name), attribute)
        else:
            entry_point = self._installed_entry_points().get(scheme)
            if entry_point is None:
                raise UnknownScheme(missing_scheme_message(scheme))
            cls = entry_point.load()
        if not (isinstance(cls, type) and issubclass(cls, Provider)):
            raise UnknownScheme(f"the provider registered for {scheme!r} is not a Provider")
        return cls

    def installed(self) -> list[InstalledProvider]:
        """Every registered scheme with its distribution and version."""
        found = []
        for name, entry_point in sorted(self._installed_entry_points().items()):
            dist = entry_point.dist
            found.append(
                InstalledProvider(
                    scheme=name,
                    target=entry_point.value,
                    distribution=dist.name if dist else "?",
                    version=dist.version if dist else "?",
                )
            )
        return found


def missing_scheme_message(scheme: str) -> str:
    """Why ``scheme`` cannot be used and what to install."""
    distribution = KNOWN_DISTRIBUTIONS.get(scheme)
    if distribution:
        return (
            f"scheme {scheme!r} is provided by {distribution}, which is not installed "
            f"(pip install {distribution})"
        )
    return f"no installed provider handles scheme {scheme!r} and none is known to provide it"
