"""The ``secretinit`` command line: run, fetch, check, providers, status.

Every option has an environment-variable twin (``SECRETINIT_DIR`` for
``--dir``, ...), so an image is configured without rewriting its ENTRYPOINT.
Everything after ``--`` (or after the first argument that is not an option)
is the command, passed through untouched; an unknown option before it is a
usage error that suggests the option meant, before anything is fetched.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from secretinit import __version__
from secretinit._declaration import parse_duration, parse_on_change, parse_refresh
from secretinit._errors import (
    EXIT_CHANGED,
    EXIT_CONFIG,
    EXIT_EXPIRED,
    EXIT_FETCH,
    EXIT_SOFTWARE,
    EXIT_USAGE,
    EXIT_WRITE,
    ConfigError,
    SecretInitError,
    SecretsUnavailable,
    UsageError,
    WriteFailed,
)
from secretinit._log import LOG_FORMATS, REDACTOR, configure_logging, log
from secretinit._registry import BUILTIN, KNOWN, ProviderRegistry, install_hint
from secretinit._resolve import resolve
from secretinit._startup import (
    DEFAULT_GRACE,
    Start,
    StartOptions,
    child_environment,
    describe_source,
    files_to_write,
    prepare,
    resolve_all,
    settings_value,
    summarize,
    write_all,
)
from secretinit._supervisor import (
    LEVELS,
    ON_CHANGE_CHOICES,
    WAITED_SIGNALS,
    SupervisorOptions,
    command_failed,
    drop_privileges,
    supervisor_argv,
)

F = TypeVar("F", bound=Callable[..., Any])

if TYPE_CHECKING:
    from secretinit._refresh import RefreshSeries
    from secretinit._resolve import Resolution
    from secretinit._writer import SecretDirectory

REFERENCES_HELP = (
    "Secrets are declared by environment references and by --config. A variable "
    "whose value is a reference to a secret store is a secret: its value is "
    "written to DIR/NAME, NAME_FILE=DIR/NAME is exported to the command and "
    "NAME is removed from its environment:\n\n"
    "\b\n  DB_PASSWORD=vault://secret/app/db#password secretinit run -- app\n\n"
    "A reference is SCHEME://LOCATION[#KEY][?OPTION=VALUE&...]. Schemes:\n\n"
    "\b\n"
    + "\n".join(f"  {scheme:<14} built in" for scheme in BUILTIN)
    + "\n"
    + "\n".join(f"  {scheme:<14} {dist}" for scheme, (dist, _target) in KNOWN.items())
    + "\n\nOther schemes (https://, postgres://, ...) and secretinit's own SECRETINIT_* "
    "variables pass through untouched; a near miss of a scheme above (awssm://, "
    "Vault://) is refused. `secretinit providers` lists what is installed."
)
EXIT_STATUSES = {
    "run": "the command's own (128+N if signal N killed it); "
    f"{EXIT_USAGE} bad command line; {EXIT_CONFIG} bad config or reference; "
    f"{EXIT_FETCH} a required secret could not be fetched; {EXIT_WRITE} a file could "
    "not be written; 126 the command cannot be executed; 127 not found; with "
    f"--on-change exit, {EXIT_CHANGED} the secrets changed and {EXIT_EXPIRED} a "
    "credential expired and cannot be replaced.",
    "fetch": f"0 written; {EXIT_USAGE} bad command line (or no --dir where one is "
    f"needed); {EXIT_CONFIG} bad config or reference; {EXIT_FETCH} a required secret "
    f"could not be fetched; {EXIT_WRITE} a file could not be written.",
    "check": "0 every required secret resolves (or was not checked on purpose) and the "
    f"directory can be used; {EXIT_USAGE} bad command line; {EXIT_CONFIG} bad config "
    f"or reference; {EXIT_FETCH} a required secret would fail; {EXIT_WRITE} the "
    "directory could not be used.",
}


def _epilog(command: str) -> str:
    return f"Exit status: {EXIT_STATUSES[command]} Environment references: secretinit --help."


class Interrupted(BaseException):
    """A stop signal arrived before the command started (BaseException: click lets it through)."""

    def __init__(self, number: int) -> None:
        super().__init__(signal.Signals(number).name)
        self.number = number


def _interrupt(number: int, _frame: object) -> None:
    raise Interrupted(number)


class Duration(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click stubs
    """Seconds, as ``30``, ``30s``, ``500ms`` or ``2m`` (``parse`` may ask for more)."""

    name = "duration"

    def __init__(self, parse: Callable[[object, str], float] = parse_duration) -> None:
        self.parse = parse

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        try:
            return self.parse(value, param.name if param and param.name else "duration")
        except ValueError as err:
            self.fail(str(err), param, ctx)


class OnChange(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click stubs
    """An --on-change action: signal:NAME, restart, exit or none."""

    name = "action"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return parse_on_change(value, "--on-change")
        except ValueError as err:
            self.fail(str(err), param, ctx)


def refresh_option(command: F) -> F:
    """``--refresh``: keep the files current (run and fetch)."""
    return click.option(
        "--refresh",
        type=Duration(parse_refresh),
        envvar="SECRETINIT_REFRESH",
        show_envvar=True,
        help="Keep the files current: fetch every secret again this often (at least 1s), "
        "rewriting only what changed.",
    )(command)


def start_options(command: F) -> F:
    """The options every command that resolves secrets takes."""
    decorators = [
        click.option(
            "--config",
            "config",
            metavar="PATH",
            envvar="SECRETINIT_CONFIG",
            show_envvar=True,
            help="TOML file declaring secrets, defaults and provider options.",
        ),
        click.option(
            "--env-file",
            metavar="PATH",
            envvar="SECRETINIT_ENV_FILE",
            show_envvar=True,
            help="Resolve every declared secret by its name from this .env file "
            "instead of its provider (local development).",
        ),
        click.option(
            "--dir",
            "directory",
            metavar="PATH",
            envvar="SECRETINIT_DIR",
            show_envvar=True,
            help="Directory for the secret files (default: /run/secretinit when "
            "in memory, else a private directory under /dev/shm).",
        ),
        click.option(
            "--timeout",
            type=Duration(),
            envvar="SECRETINIT_TIMEOUT",
            show_envvar=True,
            help="Give up on transient failures after this long (default 30s).",
        ),
        click.option(
            "--log-format",
            type=click.Choice(LOG_FORMATS),
            default="text",
            envvar="SECRETINIT_LOG_FORMAT",
            show_envvar=True,
            show_default=True,
            help="Log line format.",
        ),
        click.option(
            "--log-level",
            type=click.Choice(list(LEVELS)),
            default="info",
            envvar="SECRETINIT_LOG_LEVEL",
            show_envvar=True,
            show_default=True,
            help="Least severe level logged.",
        ),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def user_option(text: str) -> Callable[[F], F]:
    """``--user``, with what it does for this command."""
    return click.option(
        "--user",
        metavar="USER[:GROUP]",
        envvar="SECRETINIT_USER",
        show_envvar=True,
        help=text,
    )


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Fetch secrets into private files, then run the application.\n\n" + REFERENCES_HELP,
)
@click.version_option(__version__, "--version", "-V", prog_name="secretinit")
def cli() -> None:
    """Fetch secrets into private files, then run the application."""


# Not ignore_unknown_options: a misspelt option before the command (--gracee)
# must be an error naming the option meant, not the command to run.
@cli.command(context_settings={"allow_interspersed_args": False}, epilog=_epilog("run"))
@start_options
@user_option("Write the files for this user (name or id) and run the command as it.")
@click.option(
    "--grace",
    type=Duration(),
    envvar="SECRETINIT_GRACE",
    show_envvar=True,
    help="After forwarding SIGTERM or SIGINT, SIGKILL the command's process group "
    "this long later. Default: never, as tini: the orchestrator's stop period "
    "(docker stop -t, stop_grace_period, terminationGracePeriodSeconds) is the "
    "deadline. Set it a little shorter than that period for --cleanup and a "
    "logged kill to happen before the orchestrator's SIGKILL.",
)
@click.option(
    "--exec",
    "exec_",
    is_flag=True,
    default=False,
    envvar="SECRETINIT_EXEC",
    show_envvar=True,
    help="Replace secretinit with the command instead of supervising it.",
)
@click.option(
    "--cleanup/--no-cleanup",
    default=None,
    envvar="SECRETINIT_CLEANUP",
    show_envvar=True,
    help="Remove the secret files when the command exits.",
)
@refresh_option
@click.option(
    "--on-change",
    type=OnChange(),
    envvar="SECRETINIT_ON_CHANGE",
    show_envvar=True,
    help=f"With --refresh, what a change does: {ON_CHANGE_CHOICES} (default none).",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(
    command: tuple[str, ...],
    grace: float | None,
    exec_: bool,
    cleanup: bool | None,
    user: str | None,
    refresh: float | None,
    on_change: str | None,
    **options: Any,
) -> None:
    """Fetch and write the secrets, then run COMMAND supervised.

    \b
    secretinit run -- app --flag
    """
    with _Reporting(options):
        start = _prepare(options, user)
        settings = start.declaration.settings
        cleanup = bool(settings_value(cleanup, settings.cleanup, False))
        if exec_ and cleanup:
            raise UsageError("--cleanup needs the supervisor, so it cannot be used with --exec")
        series = _refresh_series(start, refresh, on_change, options, user, exec_)
        with start:
            resolution, directory = _resolve_and_write(start, series)
        if start.declaration.secrets:
            summarize(start, resolution, directory)
        elif exec_:
            log("info", "no secrets declared: running the command only", event="no_secrets")
        else:
            log("info", "no secrets declared: supervising the command only", event="no_secrets")
        env = child_environment(os.environ, start, resolution, directory)
        if exec_:
            if directory is not None and directory.temporary:
                log(
                    "info",
                    f"--exec leaves no process to remove {directory.path} after the command",
                    event="directory_kept",
                    dir=directory.path,
                )
            _exec_command(list(command), env, start)
        supervisor = _supervisor_options(list(command), start, options)
        supervisor.grace = settings_value(grace, settings.grace, DEFAULT_GRACE)
        if directory is not None and (cleanup or directory.temporary):
            supervisor.cleanup_dir = directory.path
            supervisor.cleanup_files = [
                f.name for f in files_to_write(start.declaration, resolution)
            ]
            supervisor.remove_dir = directory.created
        if series is not None:
            series.supervise(supervisor, start)
        _exec_supervisor(supervisor, env)


@cli.command(epilog=_epilog("fetch"))
@start_options
@user_option("Write the files (and make the directory) for this user (name or id).")
@refresh_option
def fetch(user: str | None, refresh: float | None, **options: Any) -> None:
    """Fetch and write the secrets, then exit (init container, Swarm init step).

    With --refresh, keep them current instead (a sidecar) until SIGTERM.

    The directory must be one the application knows: --dir (or SECRETINIT_DIR,
    or [defaults] dir) is required unless /run/secretinit is a tmpfs. fetch
    exports no variable: a secret with export = "value" and no file is said
    to be written nowhere.
    """
    with _Reporting(options):
        start = _prepare(options, user)
        series = _refresh_series(start, refresh, None, options, user, False)
        with start:
            if start.directory is None and any(s.file for s in start.declaration.secrets):
                _require_known_directory()
            resolution, directory = _resolve_and_write(start, series)
        unwritten = [
            s.name
            for s in start.declaration.secrets
            if s.file is None and s.export == "value" and s.name in resolution.values
        ]
        if unwritten:
            log(
                "warning",
                f'fetch exports no variable, so {", ".join(unwritten)} (export = "value", '
                'no file) is written nowhere: give it a file = "NAME" to write it',
                event="value_not_written",
                secrets=unwritten,
            )
        summarize(start, resolution, directory)
        if series is not None:
            supervisor = _supervisor_options([], start, options)
            series.supervise(supervisor, start)
            _exec_supervisor(
                supervisor, child_environment(os.environ, start, resolution, directory)
            )


@cli.command()
@click.option(
    "--dir",
    "directory",
    metavar="PATH",
    envvar="SECRETINIT_DIR",
    show_envvar=True,
    help="The secret directory to check.",
)
@click.option(
    "--max-age",
    metavar="DURATION|Nx",
    help="Unhealthy when the last success is older than this, or than N refresh "
    "periods (default 3x).",
)
def status(directory: str | None, max_age: str | None) -> None:
    """Say whether a directory's secrets are current: for HEALTHCHECK and probes.

    Exits 0 when the first fetch succeeded and the last success is recent
    enough, 1 when not ready or too old, 2 on bad usage.
    """
    from secretinit._health import EXIT_USAGE as STATUS_USAGE
    from secretinit._health import status as verdict

    if directory is None:
        raise click.UsageError("give --dir (or SECRETINIT_DIR)")
    code, message = verdict(directory, max_age)
    click.echo(message, err=code == STATUS_USAGE)
    sys.exit(code)


def _require_known_directory() -> None:
    from secretinit._mounts import MEMORY_FILESYSTEMS, filesystem_type
    from secretinit._writer import DEFAULT_DIR

    if filesystem_type(DEFAULT_DIR) not in MEMORY_FILESYSTEMS:
        raise UsageError(
            "fetch needs --dir (or SECRETINIT_DIR, or [defaults] dir): without it the files "
            f"go to {DEFAULT_DIR} only when it is a tmpfs, which it is not here, and a "
            "private directory under /dev/shm would be one nothing reads or removes"
        )


@cli.command(epilog=_epilog("check"))
@start_options
def check(**options: Any) -> None:
    """Resolve every secret and say where it comes from; write nothing, print no value.

    Each secret's line shows its declared reference (and, with --env-file, the
    one it resolves through), where it would go and whether it resolves; a
    last line says whether the secret directory can be used. A secret behind a
    single-use credential (a wrapped secret id) is not fetched, so that the
    real start can still use it: it shows as "not checked".
    """
    with _Reporting(options):
        start = _prepare(options, None, checking=True)
        with start:
            resolution = resolve(start.declaration.secrets, start.providers, start.timeout)
        specs = start.declaration.secrets
        width = max((len(s.name) for s in specs), default=0)
        lines = []
        for spec in specs:
            if spec.name in resolution.values:
                size = len(resolution.values[spec.name])
                status = f"ok ({size} byte{'s' if size != 1 else ''})"
            elif spec.name in resolution.unchecked:
                status = f"not checked: {resolution.unchecked[spec.name]}"
            elif spec.name in resolution.skipped:
                status = f"skipped (optional): {resolution.skipped[spec.name]}"
            else:
                status = f"FAILED: {resolution.failures[spec.name].cause}"
            target = f"file {spec.file}" if spec.file else f"export {spec.export}"
            lines.append(f"{spec.name:<{width}}  {describe_source(spec)}  -> {target}  {status}")
        click.echo("\n".join(lines) if specs else "no secrets declared")
        problem = None
        if any(spec.file for spec in specs):
            from secretinit._directory_probe import probe_directory
            from secretinit._mounts import MEMORY_FILESYSTEMS

            path, filesystem, problem = probe_directory(start.directory, start.owner)
            if problem:
                status = f"FAILED: {problem}"
            elif filesystem in MEMORY_FILESYSTEMS:
                status = f"ok ({filesystem})"
            else:
                status = (
                    f"ok, but on {filesystem or 'an unknown filesystem'}: secrets would reach disk"
                )
            click.echo(f"directory {path}  {status}")
        if resolution.failures:
            raise SecretsUnavailable(resolution.failures.values(), listed=False)
        if problem:
            raise WriteFailed(problem)


@cli.command("providers")
def list_providers() -> None:
    """List the installed providers, their schemes and versions."""
    registry = ProviderRegistry()
    installed = registry.installed()
    for found in installed:
        click.echo(f"{found.scheme:<14} {found.distribution} {found.version}  ({found.target})")
    present = {found.scheme for found in installed}
    for scheme, (distribution, _target) in sorted(KNOWN.items()):
        if scheme not in present:
            click.echo(f"{scheme:<14} not installed ({install_hint(distribution)})")


def _refresh_series(
    start: Start,
    refresh: float | None,
    on_change: str | None,
    options: dict[str, Any],
    user: str | None,
    exec_: bool,
) -> RefreshSeries | None:
    """The refresh series the options ask for, or None; refuses what cannot refresh."""
    settings = start.declaration.settings
    period = settings_value(refresh, settings.refresh, None)
    action = settings_value(on_change, settings.on_change, "none")
    if period is None:
        if on_change is not None:
            log("warning", "--on-change does nothing without --refresh", event="on_change_unused")
        return None
    if exec_:
        raise UsageError("--refresh needs the supervisor, so it cannot be used with --exec")
    if not start.declaration.secrets:
        log("warning", "--refresh: no secrets declared, so nothing to refresh", event="no_secrets")
        return None
    from secretinit._refresh import RefreshSeries  # only a refreshing start needs it (json, ...)

    return RefreshSeries(period, action, options, user)


def _resolve_and_write(
    start: Start, series: RefreshSeries | None
) -> tuple[Resolution, SecretDirectory | None]:
    """Resolve the secrets and write them; a refresh series keeps its state from the start."""
    if series is not None:
        series.enlist(start)
    resolution = resolve_all(start)
    directory = write_all(start, resolution)
    if series is not None:
        directory = series.begin(start, resolution, directory)
    return resolution, directory


def _supervisor_options(
    command: list[str], start: Start, options: dict[str, Any]
) -> SupervisorOptions:
    """What the supervisor of ``command`` is told by every command: logging and --user."""
    supervisor = SupervisorOptions(command)
    supervisor.log_format = options["log_format"]
    supervisor.log_level = options["log_level"]
    if not start.identity.is_current:
        identity = start.identity
        supervisor.user = (identity.uid, identity.gid, identity.groups)
    return supervisor


def _prepare(options: dict[str, Any], user: str | None, checking: bool = False) -> Start:
    source = click.get_current_context().get_parameter_source("env_file")
    from_variable = source is click.core.ParameterSource.ENVIRONMENT
    return prepare(
        StartOptions(
            config=options["config"],
            env_file=options["env_file"],
            dir=options["directory"],
            user=user,
            timeout=options["timeout"],
            checking=checking,
            env_file_origin="SECRETINIT_ENV_FILE" if from_variable else "--env-file",
        ),
        os.environ,
        ProviderRegistry(),
    )


class _Reporting:
    """Log a secretinit error as one record and exit with its status."""

    def __init__(self, options: dict[str, Any]) -> None:
        configure_logging(options["log_format"], options["log_level"])
        self.previous = {n: signal.signal(n, _interrupt) for n in (signal.SIGTERM, signal.SIGINT)}

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _tb: object
    ) -> None:
        if error is None:
            return
        if isinstance(error, SecretsUnavailable):
            log("error", str(error), event="secrets_unavailable", **error.fields())
            sys.exit(error.exit_status)
        if isinstance(error, ConfigError):
            log("error", str(error), event="config_error", problems=error.problems)
            sys.exit(error.exit_status)
        if isinstance(error, SecretInitError):
            event = re.sub(r"(?<!^)(?=[A-Z])", "_", type(error).__name__).lower()
            log("error", str(error), event=event)
            sys.exit(error.exit_status)
        if isinstance(error, Interrupted):
            log("warning", f"stopped by {error} before the command started", event="interrupted")
            sys.exit(128 + error.number)
        if isinstance(error, Exception):
            import traceback

            log(
                "error",
                f"internal error: {type(error).__name__} (--log-level debug shows where)",
                event="internal_error",
            )
            log(
                "debug",
                REDACTOR.redact("".join(traceback.format_exception(error))),
                event="traceback",
            )
            sys.exit(EXIT_SOFTWARE)


def _exec_supervisor(options: SupervisorOptions, env: dict[str, str]) -> NoReturn:
    # Block before exec: a stop signal that lands while the supervisor starts
    # waits pending for it instead of killing (or, as PID 1, missing) it.
    original = signal.pthread_sigmask(signal.SIG_BLOCK, WAITED_SIGNALS)
    options.child_sigmask = tuple(sorted(int(s) for s in original))
    argv = supervisor_argv(options)
    sys.stderr.flush()
    sys.stdout.flush()
    try:
        os.execve(argv[0], argv, env)
    except OSError as err:
        raise SecretInitError(f"cannot start the supervisor {argv[0]}: {err.strerror}") from None


def _exec_command(command: list[str], env: dict[str, str], start: Start) -> NoReturn:
    for number in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTERM, signal.SIGINT):
        signal.signal(number, signal.SIG_DFL)
    identity = start.identity
    if not identity.is_current:
        drop_privileges(identity.uid, identity.gid, identity.groups)
    sys.stderr.flush()
    sys.stdout.flush()
    try:
        os.execvpe(command[0], command, env)
    except OSError as err:
        failure = command_failed(command[0], err.errno or 0)
        log("error", str(failure), event="command_failed", status=failure.status)
        sys.exit(failure.status)


def main() -> NoReturn:
    """The console script."""
    try:
        cli.main(prog_name="secretinit")
    except Interrupted as interrupted:
        sys.exit(128 + interrupted.number)
    sys.exit(EXIT_USAGE)  # click returns only on an error it already reported
