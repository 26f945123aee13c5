"""Which provider handles which scheme, imported only when a secret names it.

Providers register in the ``secretinit.providers`` entry-point group under
their scheme. Scanning that group means reading the metadata of every
installed distribution (``importlib.metadata`` alone costs more than the rest
of an env-file start), so, as fsspec does, the schemes of the built-in and
first-party providers are a table of ``module:Class`` imported directly; only
a scheme outside that table triggers the one scan. A scheme that nothing
installed handles says which distribution to install, when one is known,
and a near miss of a known scheme says which one was meant.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from secretinit._errors import UnknownScheme
from secretinit._suggest import closest

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    from secretinit._provider import Provider

ENTRY_POINT_GROUP = "secretinit.providers"

BUILTIN: dict[str, str] = {
    "env-file": "secretinit._env_file:EnvFileProvider",
    "docker-secret": "secretinit._docker_secret:DockerSecretProvider",
}

# The first-party providers that live in their own distributions: scheme ->
# (distribution, the target its entry point registers). A test keeps this in
# step with the distributions' own entry points.
KNOWN: dict[str, tuple[str, str]] = {
    "vault": ("secretinit-vault", "secretinit_vault:VaultProvider"),
    "aws-sm": ("secretinit-aws", "secretinit_aws:SecretsManagerProvider"),
    "aws-ssm": ("secretinit-aws", "secretinit_aws:ParameterStoreProvider"),
    "azure-kv": ("secretinit-azure", "secretinit_azure:AzureKeyVaultProvider"),
    "gcp-sm": ("secretinit-gcp", "secretinit_gcp:SecretManagerProvider"),
    "sm": ("secretinit-gcp", "secretinit_gcp:BerglasProvider"),
}

# Schemes that environment variables commonly hold and that are not secret
# stores: such a value is passed through without scanning the installed
# distributions for a provider. A provider cannot claim one of these.
COMMON_URL_SCHEMES = frozenset(
    {
        "http", "https", "ws", "wss", "ftp", "ftps", "sftp", "ssh", "git", "file",
        "tcp", "udp", "unix", "grpc", "grpcs", "dns",
        "postgres", "postgresql", "mysql", "mariadb", "sqlite", "mssql", "oracle",
        "redis", "rediss", "memcached", "mongodb", "mongodb+srv", "cassandra",
        "amqp", "amqps", "mqtt", "mqtts", "nats", "kafka", "stomp",
        "ldap", "ldaps", "smtp", "smtps", "imap", "imaps",
        "s3", "gs", "az", "abfs", "abfss", "hdfs", "jdbc",
    }
)  # fmt: skip


def _import_target(target: str) -> object:
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


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
        if scheme in BUILTIN or scheme in KNOWN:
            return True
        if scheme in COMMON_URL_SCHEMES:
            return False
        return scheme in self._installed_entry_points()

    def schemes(self) -> list[str]:
        """Every scheme a reference may name here: built in, first-party, installed."""
        return sorted({*BUILTIN, *KNOWN, *self._installed_entry_points()})

    def misspelt(self, written: str, separator: str = "://") -> str | None:
        """The known scheme that ``written`` (before ``separator``) most likely meant.

        For a value that is not a reference as written: a different case
        (``Vault``), a wrong number of slashes (``vault:/``), a lost or
        swapped character (``awssm``, ``vualt``). Common URL schemes
        (``https``) are never a near miss.
        """
        lowered = written.lower()
        if lowered in COMMON_URL_SCHEMES:
            return None
        if separator == "://" and written == lowered and self.handles(written):
            return None  # a reference as written, not a mistake
        schemes = self.schemes()
        if lowered in schemes:
            return lowered
        squeezed = lowered.replace("-", "").replace("_", "").replace(".", "")
        for scheme in schemes:
            if squeezed == scheme.replace("-", ""):
                return scheme
        return closest(lowered, schemes, cutoff=0.8)

    def known_tables(self) -> list[str]:
        """The ``[providers.NAME]`` tables of built-in and first-party providers."""
        first_party = {dist.removeprefix("secretinit-") for dist, _ in KNOWN.values()}
        return sorted({*BUILTIN, *KNOWN, *first_party})

    def names_provider(self, table: str) -> bool:
        """Whether ``[providers.table]`` can belong to a provider (or is a typo)."""
        return table in self.known_tables() or table in self._installed_entry_points()

    def load(self, scheme: str) -> type[Provider]:
        """Import and return the provider class for ``scheme``."""
        from secretinit._provider import Provider

        if scheme in BUILTIN:
            cls = _import_target(BUILTIN[scheme])
        elif scheme in KNOWN and _importable(KNOWN[scheme][1]):
            cls = _import_target(KNOWN[scheme][1])
        else:
            entry_point = self._installed_entry_points().get(scheme)
            if entry_point is None:
                raise UnknownScheme(self.missing_scheme_message(scheme))
            cls = entry_point.load()
        if not (isinstance(cls, type) and issubclass(cls, Provider)):
            raise UnknownScheme(f"the provider registered for {scheme!r} is not a Provider")
        return cls

    def missing_scheme_message(self, scheme: str) -> str:
        """Why ``scheme`` cannot be used: what to install, or which scheme was meant."""
        if scheme in KNOWN:
            distribution = KNOWN[scheme][0]
            return (
                f"scheme {scheme!r} is provided by {distribution}, which is not installed "
                f"({install_hint(distribution)})"
            )
        meant = closest(scheme, self.schemes())
        hint = f" (did you mean {meant}://?)" if meant else ""
        return (
            f"no installed provider handles scheme {scheme!r} and none is known to provide it{hint}"
        )

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


def _importable(target: str) -> bool:
    from importlib.util import find_spec

    return find_spec(target.partition(":")[0]) is not None


def install_hint(distribution: str) -> str:
    """How to install a first-party provider: from a clone, until a release is published."""
    directory = distribution.removeprefix("secretinit-")
    return f"from a clone of secretinit: pip install ./providers/{directory}"
