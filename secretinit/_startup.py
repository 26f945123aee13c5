"""The start-up steps that ``run``, ``fetch`` and ``check`` share.

declare -> build providers -> resolve -> write -> the application's
environment. Each step raises one error from the family in ``_errors`` with
every problem it found; none of them prints or returns a value to a caller
that logs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from secretinit._capabilities import require_user_switch
from secretinit._declaration import Declaration, SecretSpec, declare
from secretinit._errors import (
    BadReference,
    ConfigError,
    SecretsUnavailable,
    UnknownScheme,
    UsageError,
)
from secretinit._identity import Identity, current_identity, resolve_identity
from secretinit._log import log
from secretinit._provider import Provider
from secretinit._registry import ProviderRegistry
from secretinit._resolve import Resolution, resolve
from secretinit._writer import (
    FileOwner,
    SecretDirectory,
    SecretFile,
    open_secret_directory,
    write_secret_files,
)

DEFAULT_TIMEOUT = 30.0
DEFAULT_GRACE = 10.0


@dataclass
class StartOptions:
    """The options of run, fetch and check, as given on the command line or environment."""

    config: str | None = None
    env_file: str | None = None
    dir: str | None = None
    user: str | None = None
    timeout: float | None = None
    checking: bool = False  # secretinit check: providers consume no single-use credential


@dataclass
class Start:
    """A declared, checked start: the secrets, their providers and who gets them."""

    declaration: Declaration
    providers: dict[str, Provider]
    identity: Identity
    timeout: float
    directory: str | None  # --dir, else [defaults] dir; None: the default directory
    started: float = field(default_factory=time.monotonic)

    @property
    def owner(self) -> FileOwner:
        group = self.declaration.settings.group
        return FileOwner(self.identity.uid, self.identity.with_group(group), group is not None)

    def __enter__(self) -> Start:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_exc: object) -> None:
        if kind is not None:
            for provider in self.providers.values():
                try:
                    provider.abandon()
                except Exception as err:  # the start failed already; say so, go on
                    log(
                        "warning",
                        f"{provider.scheme}: releasing fetched secrets failed: "
                        f"{type(err).__name__}",
                        event="abandon_failed",
                    )
        self.close()

    def close(self) -> None:
        """Close every provider (a Vault login token is revoked here), on success or not."""
        for provider in self.providers.values():
            try:
                provider.close()
            except Exception as err:  # closing must not turn a good start into a failure
                log(
                    "debug",
                    f"{provider.scheme}: close failed: {type(err).__name__}",
                    event="close_failed",
                )


def prepare(options: StartOptions, environ: Mapping[str, str], registry: ProviderRegistry) -> Start:
    """Read the declaration and build the providers it needs; fail on any bad input."""
    declaration = declare(environ, options.config, registry.handles)
    if options.env_file is not None:
        declaration = declaration.with_env_file(options.env_file)
    settings = declaration.settings
    user = options.user or settings.user
    identity = resolve_identity(user) if user else current_identity()
    if os.geteuid() != 0 and not identity.is_current:
        raise UsageError(f"--user {user} needs root: secretinit runs as uid {os.geteuid()}")
    if user and not identity.is_current and not options.checking:
        require_user_switch(user)
    providers = build_providers(declaration, registry, environ)
    for provider in providers.values():
        provider.checking = options.checking
    return Start(
        declaration,
        providers,
        identity,
        timeout=settings_value(options.timeout, settings.timeout, DEFAULT_TIMEOUT),
        directory=settings_value(options.dir, settings.dir, None),
    )


def build_providers(
    declaration: Declaration, registry: ProviderRegistry, environ: Mapping[str, str]
) -> dict[str, Provider]:
    """One provider per scheme in use; every bad scheme, option or reference at once."""
    problems: list[str] = []
    providers: dict[str, Provider] = {}
    tables: set[str] = set()
    for scheme in declaration.schemes():
        try:
            cls = registry.load(scheme)
            table = cls.config_table or scheme
            tables.add(table)
            providers[scheme] = cls(scheme, declaration.provider_options.get(table, {}), environ)
        except UnknownScheme as err:
            problems.append(str(err))
        except ConfigError as err:
            problems.extend(err.problems or [str(err)])
    for spec in declaration.secrets:
        if spec.ref is not None and spec.ref.scheme in providers:
            try:
                providers[spec.ref.scheme].check_reference(spec.ref)
            except BadReference as err:
                problems.append(f"{spec.source}: {spec.ref}: {err}")
    for table in sorted(set(declaration.provider_options) - tables):
        if registry.names_provider(table):
            # Normal with --env-file: the production tables stay in the config.
            log("debug", f"[providers.{table}] is not used by this run", event="provider_unused")
        else:
            log(
                "warning",
                f"[providers.{table}] names no provider: a typo? (known: "
                f"{', '.join(registry.known_tables())})",
                event="provider_unknown",
            )
    if problems:
        for provider in providers.values():
            provider.close()
        # Schemes sharing a table report its problems once.
        raise ConfigError("the declared secrets cannot be fetched:", dict.fromkeys(problems))
    return providers


def resolve_all(start: Start) -> Resolution:
    """Resolve every secret; raise one report if a required one failed."""
    resolution = resolve(start.declaration.secrets, start.providers, start.timeout)
    for spec in start.declaration.secrets:
        if spec.export == "value" and spec.name in resolution.values:
            problem = _value_export_problem(resolution.values[spec.name])
            if problem:
                resolution.failures[spec.name] = resolution.report_line(spec, problem)
    if resolution.unchecked:  # only check may leave a secret untried; a start never does
        specs = {spec.name: spec for spec in start.declaration.secrets}
        for name, reason in resolution.unchecked.items():
            resolution.failures[name] = resolution.report_line(
                specs[name], f"not fetched: {reason}"
            )
    if resolution.failures:
        raise SecretsUnavailable(resolution.failures.values())
    return resolution


def _value_export_problem(value: bytes) -> str | None:
    if b"\0" in value:
        return 'export = "value": the value holds a NUL byte, which no environment variable can'
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return 'export = "value": the value is not UTF-8 text'
    return None


def files_to_write(declaration: Declaration, resolution: Resolution) -> list[SecretFile]:
    """The files of every resolved secret that has one."""
    return [
        SecretFile(spec.name, spec.file, resolution.values[spec.name], spec.mode)
        for spec in declaration.secrets
        if spec.file is not None and spec.name in resolution.values
    ]


def write_all(start: Start, resolution: Resolution) -> SecretDirectory | None:
    """Write the files into a private directory; None when there is nothing to write."""
    files = files_to_write(start.declaration, resolution)
    if not files:
        return None
    directory = open_secret_directory(start.directory, start.owner)
    try:
        write_secret_files(directory, files, start.owner)
    finally:
        directory.close()
    return directory


def summarize(start: Start, resolution: Resolution, directory: SecretDirectory | None) -> None:
    """The closing line: how many secrets, from which providers, where, in how long."""
    elapsed = time.monotonic() - start.started
    count = len(resolution.values)
    by_provider = ", ".join(f"{scheme}: {n}" for scheme, n in sorted(resolution.counts.items()))
    where = f" to {directory.path}" if directory is not None else ""
    skipped = f", {len(resolution.skipped)} optional skipped" if resolution.skipped else ""
    log(
        "info",
        f"resolved {count} secret{'s' if count != 1 else ''}{where} "
        f"({by_provider or 'no provider'}{skipped}) in {elapsed:.3f} s",
        event="summary",
        secrets=count,
        providers=dict(resolution.counts),
        skipped=sorted(resolution.skipped),
        dir=directory.path if directory else None,
        elapsed=round(elapsed, 6),
    )


def child_environment(
    environ: Mapping[str, str],
    start: Start,
    resolution: Resolution,
    directory: SecretDirectory | None,
) -> dict[str, str]:
    """The application's environment: ``NAME_FILE`` in, ``NAME`` and credentials out."""
    env = dict(environ)
    for provider in start.providers.values():
        for variable in provider.credential_variables:
            env.pop(variable, None)
    for spec in start.declaration.secrets:
        _export(env, spec, resolution, directory)
    if not start.identity.is_current:
        env["HOME"] = start.identity.home
    return env


def _export(
    env: dict[str, str], spec: SecretSpec, resolution: Resolution, directory: SecretDirectory | None
) -> None:
    # NAME goes in every case: it held the reference, and postgres-style
    # images refuse NAME and NAME_FILE together.
    env.pop(spec.name, None)
    if spec.name not in resolution.values:
        return  # an optional secret that was skipped
    if spec.export == "value":
        env[spec.name] = resolution.values[spec.name].decode("utf-8")
    elif spec.export == "file" and spec.file is not None and directory is not None:
        env[f"{spec.name}_FILE"] = os.path.join(directory.path, spec.file)


def describe_source(spec: SecretSpec) -> str:
    """Where a secret comes from, for ``check``: its reference or its template."""
    if spec.ref is not None:
        return str(spec.ref)
    return "template of " + (", ".join(spec.template_names) or "no secret")


def settings_value(given: Any, configured: Any, default: Any) -> Any:
    """The command line (or its variable) over the config's [defaults] over the default."""
    if given is not None:
        return given
    return default if configured is None else configured
