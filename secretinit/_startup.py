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
from typing import Any

from secretinit._capabilities import require_user_switch
from secretinit._declaration import PROBLEMS_HEADER, Declaration, SecretSpec, collect_declaration
from secretinit._errors import (
    ConfigError,
    SecretsUnavailable,
    UnknownScheme,
    UsageError,
    unreadable,
)
from secretinit._identity import Identity, current_identity, resolve_identity
from secretinit._log import log
from secretinit._provider import Provider, reference_problem, unknown_options
from secretinit._registry import KNOWN, ProviderRegistry, install_hint
from secretinit._resolve import Resolution, resolve
from secretinit._suggest import closest
from secretinit._writer import (
    FileOwner,
    SecretDirectory,
    SecretFile,
    open_secret_directory,
    write_secret_files,
)

DEFAULT_TIMEOUT = 30.0
# No deadline of secretinit's own after a forwarded SIGTERM, as tini and
# dumb-init: the orchestrator owns it (docker stop -t, stop_grace_period,
# terminationGracePeriodSeconds) and SIGKILLs the container when it passes.
DEFAULT_GRACE: float | None = None


class StartOptions:
    """The options of run, fetch and check, as given on the command line or environment."""

    def __init__(
        self,
        config: str | None = None,
        env_file: str | None = None,
        dir: str | None = None,
        user: str | None = None,
        timeout: float | None = None,
        checking: bool = False,
        env_file_origin: str = "--env-file",
    ) -> None:
        self.config = config
        self.env_file = env_file
        self.dir = dir
        self.user = user
        self.timeout = timeout
        #: secretinit check: providers consume no single-use credential.
        self.checking = checking
        #: How the --env-file path was given, for its errors: the option or its variable.
        self.env_file_origin = env_file_origin


class Start:
    """A declared, checked start: the secrets, their providers and who gets them."""

    def __init__(
        self,
        declaration: Declaration,
        providers: dict[str, Provider],
        identity: Identity,
        timeout: float,
        directory: str | None,
    ) -> None:
        self.declaration = declaration
        self.providers = providers
        self.identity = identity
        self.timeout = timeout
        #: --dir, else [defaults] dir; None: the default directory.
        self.directory = directory
        self.started = time.monotonic()

    @property
    def owner(self) -> FileOwner:
        group = self.declaration.settings.group
        return FileOwner(self.identity.uid, self.identity.with_group(group), group is not None)

    def __enter__(self) -> Start:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_exc: object) -> None:
        if kind is not None:
            self.abandon()
        self.close()

    def abandon(self) -> None:
        """The run failed: providers release what they fetched anew (see Provider.abandon)."""
        for provider in self.providers.values():
            try:
                provider.abandon()
            except Exception as err:  # the run failed already; say so, go on
                log(
                    "warning",
                    f"{provider.scheme}: releasing fetched secrets failed: {type(err).__name__}",
                    event="abandon_failed",
                )

    def close(self) -> None:
        """Close every provider (a Vault login token is revoked here), on success or not."""
        close_providers(self.providers)


def close_providers(providers: Mapping[str, Provider]) -> None:
    """Close each provider; a failure to close is logged, never raised."""
    for provider in providers.values():
        try:
            provider.close()
        except Exception as err:  # closing must not turn a good start into a failure
            log(
                "debug",
                f"{provider.scheme}: close failed: {type(err).__name__}",
                event="close_failed",
            )


def prepare(options: StartOptions, environ: Mapping[str, str], registry: ProviderRegistry) -> Start:
    """Read the declaration and build the providers it needs; fail on any bad input.

    A bad command line fails first and alone (status 2). Then every problem of
    the declaration, of its schemes and of the providers' options is reported
    in one :class:`ConfigError` (status 78). With ``--env-file`` the declared
    references are checked against their providers' classes (schemes, option
    names, ``#KEY``) before they are resolved from the file instead, so that
    a config that works on a laptop also names stores that exist.
    """
    env_file = check_env_file(options.env_file, options.env_file_origin)
    declaration = collect_declaration(environ, options.config, registry)
    problems = declaration.problems
    settings = declaration.settings
    identity = _identity(options, declaration)
    if env_file is not None:
        check_declared_references(declaration, registry)
        declaration = declaration.with_env_file(env_file)
    providers = build_providers(declaration, registry, environ)
    if problems:
        close_providers(providers)
        # Schemes sharing a table report its problems once.
        raise ConfigError(PROBLEMS_HEADER, dict.fromkeys(problems))
    assert identity is not None  # a problem was reported otherwise
    for provider in providers.values():
        provider.checking = options.checking
    return Start(
        declaration,
        providers,
        identity,
        timeout=settings_value(options.timeout, settings.timeout, DEFAULT_TIMEOUT),
        directory=settings_value(options.dir, settings.dir, None),
    )


def check_env_file(path: str | None, origin: str) -> str | None:
    """The absolute path of a readable ``--env-file``, or one usage error saying why not."""
    if path is None:
        return None
    absolute = os.path.abspath(path)
    given = f"{origin}={path}" if origin.startswith("SECRETINIT_") else f"{origin} {path}"
    try:
        with open(absolute, "rb"):
            pass
    except OSError as err:
        raise UsageError(f"{given}: {unreadable(absolute, err)}") from None
    return absolute


def _identity(options: StartOptions, declaration: Declaration) -> Identity | None:
    """Who the files are for; a bad --user fails at once, a bad [defaults] user is a problem."""
    settings = declaration.settings
    user = options.user or settings.user
    try:
        identity = resolve_identity(user) if user else current_identity()
    except UsageError as err:
        if options.user:
            raise
        reason = str(err).removeprefix("--user ")
        declaration.problems.append(
            f"{declaration.place('defaults', 'user')}: [defaults] user {reason}"
        )
        return None
    given = "--user" if options.user else "[defaults] user"
    if os.geteuid() != 0 and not identity.is_current:
        raise UsageError(f"{given} {user} needs root: secretinit runs as uid {os.geteuid()}")
    if user and not identity.is_current and not options.checking:
        require_user_switch(f"{given} {user}")
    if settings.group is not None:
        try:
            identity.with_group(settings.group)
        except UsageError as err:
            declaration.problems.append(
                f"{declaration.place('defaults', 'group')}: [defaults] group: {err}"
            )
    return identity


def check_declared_references(declaration: Declaration, registry: ProviderRegistry) -> None:
    """Check each declared reference against its provider's class, building no provider.

    For ``--env-file``: the file supplies the values, but a misspelt scheme,
    option or table key of the production config is still a problem. A
    first-party provider that is not installed here is not needed for the
    values; its references cannot be checked further, which is said once.
    """
    problems = declaration.problems
    for scheme, specs in declaration.by_scheme().items():
        try:
            cls = registry.load(scheme)
        except UnknownScheme as err:
            if scheme in KNOWN:
                distribution = KNOWN[scheme][0]
                log(
                    "info",
                    f"{len(specs)} {scheme}:// reference{'s' if len(specs) != 1 else ''} "
                    f"not checked: {distribution} is not installed here "
                    f"({install_hint(distribution)}); --env-file supplies the values",
                    event="references_not_checked",
                    scheme=scheme,
                )
            else:
                problems.extend(_scheme_problems(specs, str(err)))
            continue
        for spec in specs:
            assert spec.ref is not None
            problem = reference_problem(cls, spec.ref)
            if problem:
                problems.append(f"{spec.reference_source}: {spec.ref}: {problem}")
        table = cls.config_table or scheme
        options = declaration.provider_options.get(table, {})
        problems.extend(
            dict.fromkeys(
                _place_provider_problem(declaration, p)
                for p in unknown_options(cls, table, options)
            )
        )


def _scheme_problems(specs: list[SecretSpec], message: str) -> list[str]:
    """The problem of a scheme nothing handles: at the reference, or once for many."""
    if len(specs) == 1:
        return [f"{specs[0].reference_source}: {message}"]
    used = ", ".join(f"{s.name} ({s.reference_source})" for s in specs)
    return [f"{message}; used by {used}"]


def _place_provider_problem(declaration: Declaration, problem: str) -> str:
    """``file:line: problem`` at the ``[providers.NAME] key`` a provider's problem names."""
    import re  # the error path only

    found = re.match(r"\[providers\.([A-Za-z0-9_.-]+)\]\s+'?([A-Za-z0-9_-]+)", problem)
    if found is None:
        return problem
    table, key = found.groups()
    if declaration.places is None or ("providers", table) not in declaration.places:
        return problem  # a table the config does not have: the option is missing
    return f"{declaration.place('providers', table, key)}: {problem}"


def build_providers(
    declaration: Declaration, registry: ProviderRegistry, environ: Mapping[str, str]
) -> dict[str, Provider]:
    """One provider per scheme in use; each bad scheme, option or reference a problem.

    The problems are added to ``declaration.problems``, placed at the key at
    fault where the config file has it.
    """
    problems = declaration.problems
    providers: dict[str, Provider] = {}
    tables: set[str] = set()
    for scheme, specs in declaration.by_scheme().items():
        try:
            cls = registry.load(scheme)
        except UnknownScheme as err:
            problems.extend(_scheme_problems(specs, str(err)))
            continue
        table = cls.config_table or scheme
        tables.add(table)
        try:
            providers[scheme] = cls(scheme, declaration.provider_options.get(table, {}), environ)
        except ConfigError as err:
            for problem in err.problems or [str(err)]:
                if not problem.startswith("[providers."):
                    problem = f"{table}: {problem}"  # not about a key of the table: no line
                problems.append(_place_provider_problem(declaration, problem))
    for spec in declaration.secrets:
        if spec.ref is not None and spec.ref.scheme in providers:
            try:
                providers[spec.ref.scheme].check_reference(spec.ref)
            except ConfigError as err:
                problems.append(f"{spec.reference_source}: {spec.ref}: {err}")
    for table in sorted(set(declaration.provider_options) - tables):
        if registry.names_provider(table):
            # Normal with --env-file: the production tables stay in the config.
            log("debug", f"[providers.{table}] is not used by this run", event="provider_unused")
        else:
            meant = closest(table, registry.known_tables())
            hint = f"did you mean [providers.{meant}]? " if meant else ""
            log(
                "warning",
                f"{declaration.place('providers', table)}: [providers.{table}] names no "
                f"provider: a typo? ({hint}known: {', '.join(registry.known_tables())})",
                event="provider_unknown",
            )
    return providers


def resolve_all(start: Start) -> Resolution:
    """Resolve every secret; raise one report if a required one failed."""
    resolution = resolve(start.declaration.secrets, start.providers, start.timeout)
    for spec in start.declaration.secrets:
        if spec.export == "value" and spec.name in resolution.values:
            problem = _value_export_problem(resolution.values[spec.name])
            if problem:
                resolution.fail(spec, "cannot export", problem)
    if resolution.unchecked:  # only check may leave a secret untried; a start never does
        specs = {spec.name: spec for spec in start.declaration.secrets}
        for name, reason in resolution.unchecked.items():
            resolution.fail(specs[name], "not fetched", reason)
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
    """Where a secret comes from, for ``check``: its reference (and the one resolved
    through under ``--env-file``), or its template."""
    origin = spec.origin  # a property that formats the reference: once
    if origin is not None:
        return origin
    return "template of " + (", ".join(spec.template_names) or "no secret")


def settings_value(given: Any, configured: Any, default: Any) -> Any:
    """The command line (or its variable) over the config's [defaults] over the default."""
    if given is not None:
        return given
    return default if configured is None else configured
