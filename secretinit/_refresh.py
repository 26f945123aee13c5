"""Refresh series: the start that begins one, and each ``secretinit refresh-run`` after it.

A series is the start (``run --refresh`` or ``fetch --refresh``) and the
refresh runs that the lean supervisor (``secretinit._supervisor``) starts
each period. A refresh run is a whole start again in a fresh process that
ends once the files are current, so nothing of click, the SDKs or their HTTP
stacks stays resident between refreshes.

- **What a run repeats**: the start record the start leaves in the secret
  directory's private state directory (``..secretinit/start.json``, 0600,
  on the same tmpfs as the secrets): the start's options (config file,
  ``--env-file``, the directory as chosen, ``--user``, ``--timeout``,
  logging, the period), its whole environment (the secrets' references
  and the providers' credentials, such as ``VAULT_TOKEN``, which the
  command's environment no longer holds) and where it found its modules
  (``sys.path``: a run's interpreter starts isolated, ``-I``, and must still
  find a provider installed through ``PYTHONPATH``). What must not repeat is not in it: the
  command, ``--exec``, ``--cleanup``, ``--grace`` and ``--on-change`` are the
  supervisor's, and a run has the supervisor's ids (with ``--user``, the
  application's user: the config, the env file and the providers'
  credential files must be readable by that user).
- **What providers keep** between runs (a token, lease ids):
  ``..secretinit/providers.json`` (0600); see ``secretinit._provider``.
- **What a run does**: prepare, resolve and write exactly as the start did,
  so a refresh costs the start's requests (batching is the providers'). The
  writer compares by content and swaps in a new generation of files only
  when something changed. Comparing by content rather than by a store's
  version number costs nothing more: every store is read for the values
  anyway (a version alone would be one more request per secret, where the
  values come in batches), and it catches every change, templates
  included. The command's environment is computed again; when an exported
  value changed (``export = "value"``, an optional secret that appeared), it
  goes to ``..secretinit/environ`` for the supervisor's next restart.
- **What a run says**: on the pipe that ``--report-fd`` names (the protocol
  is in the supervisor's docstring), by its exit status (0; the start's 2,
  69, 73, 70; ``EXIT_EXPIRED`` when a held credential ran out; 128+N when
  stopped), in ``..secretinit/health`` (``secretinit._health``), and in its
  log: a failure as the start reports one (names and reasons, never a
  value), a success at debug level only: the supervisor logs the one line
  of a refresh that changed something.
- **The last run** (``refresh-run --dir DIR --release``): once the command
  of ``run --refresh`` exited for good, the supervisor starts one more run
  that repeats the start's preparation, restores the providers' state and
  calls each provider's ``release()`` (a Vault login token revoked, and its
  leases with it), then removes that state. A sidecar has no such run.
- **Failing well**: a failed run writes nothing (the last good files stay),
  and a secret that disappeared from the store is such a failure: its file
  keeps the last value until the store has it again or the container is
  restarted without it. A stop signal ends the run at once; the writer
  removes what it staged, and holds the signal while it swaps.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, BinaryIO

from secretinit._errors import (
    EXIT_EXPIRED,
    EXIT_SOFTWARE,
    EXIT_USAGE,
    SecretInitError,
    SecretsUnavailable,
    UsageError,
    WriteFailed,
)
from secretinit._health import HEALTH_FILE, Health, read_health
from secretinit._log import REDACTOR, configure_logging, log
from secretinit._registry import ProviderRegistry
from secretinit._resolve import Resolution
from secretinit._startup import (
    Start,
    StartOptions,
    child_environment,
    files_to_write,
    prepare,
    resolve_all,
)
from secretinit._supervisor import (
    COMMAND_ENVIRONMENT,
    PROVIDER_STATE,
    START_RECORD,
    STATE_DIRECTORY,
    SupervisorOptions,
)
from secretinit._writer import (
    FileOwner,
    SecretDirectory,
    held_stop_signals,
    open_secret_directory,
    open_state_directory,
    write_private_file,
    write_secret_files,
)

RECORD_VERSION = 1
# A refresh run may take its --timeout for the fetch, plus this for the rest
# (the interpreter, the SDKs' imports, the writes) before the supervisor kills it.
RUN_LIMIT_MARGIN = 60.0


class RefreshSeries:
    """The start's side of a series: what it must leave for the runs, and tell the supervisor."""

    def __init__(
        self, period: float, on_change: str, options: Mapping[str, Any], user: str | None
    ) -> None:
        self.period = period
        self.on_change = on_change
        self.options = options
        self.user = user
        self.directory: SecretDirectory | None = None
        self.within: float | None = None

    def enlist(self, start: Start) -> None:
        """Tell the providers they are in a series (before anything is fetched)."""
        for provider in start.providers.values():
            provider.refreshing = True

    def begin(
        self, start: Start, resolution: Resolution, written: SecretDirectory | None
    ) -> SecretDirectory:
        """After the start's write: the start record, the providers' state, the health record.

        Returns the secret directory (opened for this when no file was written).
        """
        if written is None:  # no file: the directory still holds the series' state
            written = open_secret_directory(start.directory, start.owner, warn=False)
            written.close()
        record = {
            "version": RECORD_VERSION,
            "period": self.period,
            "config": _absolute(self.options.get("config")),
            "env_file": _absolute(self.options.get("env_file")),
            "user": self.user,
            "timeout": self.options.get("timeout"),
            "log_format": self.options.get("log_format", "text"),
            "log_level": self.options.get("log_level", "info"),
            "environ": dict(os.environ),
            # A run's interpreter starts isolated (-I): without this, a provider
            # installed through PYTHONPATH would be found by the start only.
            "sys_path": list(sys.path),
        }
        owner = start.owner
        _write_state(written, START_RECORD, json.dumps(record).encode(), owner)
        self.within = _save_providers(start, written)
        now = time.time()
        _write_state(written, HEALTH_FILE, Health(self.period, now, now, now).render(), owner)
        self.directory = written
        log(
            "debug",
            f"refreshing {len(resolution.values)} secrets every {self.period:g} s",
            event="refresh_begun",
            period=self.period,
        )
        return written

    def supervise(self, supervisor: SupervisorOptions, start: Start) -> None:
        """Give the supervisor what it needs to run the series."""
        assert self.directory is not None, "begin() comes first"
        supervisor.refresh = self.period
        supervisor.refresh_dir = self.directory.path
        supervisor.refresh_first = self.within
        supervisor.refresh_limit = start.timeout + RUN_LIMIT_MARGIN
        supervisor.on_change = self.on_change


class Stopped(BaseException):
    """A stop signal reached a refresh run (BaseException: nothing may swallow it)."""

    def __init__(self, number: int) -> None:
        super().__init__(signal.Signals(number).name)
        self.number = number


def _stop(number: int, _frame: object) -> None:
    for stop in (signal.SIGTERM, signal.SIGINT):  # once is enough: clean up, then go
        signal.signal(stop, signal.SIG_IGN)
    raise Stopped(number)


def refresh_run_main(argv: list[str]) -> int:
    """``secretinit refresh-run --dir DIR --report-fd N``: one run of a series; its exit status.

    Started by the supervisor only (it is not a user's command).
    """
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, _stop)
    try:
        directory, report_fd = _parse(argv)
    except ValueError as err:
        print(f"secretinit refresh-run: {err}", file=sys.stderr)
        return EXIT_USAGE
    if report_fd is None:
        return _release(directory)
    report: dict[str, str] = {}
    started = time.time()
    try:
        return _refresh(directory, report, started)
    except Stopped as stopped:
        log("debug", f"refresh stopped by {stopped}", event="refresh_stopped")
        return 128 + stopped.number
    except SecretInitError as err:
        failed = err.failures if isinstance(err, SecretsUnavailable) else []
        _record_failure(directory, started, tuple(f.name for f in failed))
        if isinstance(err, SecretsUnavailable):
            log(
                "error",
                f"refresh failed; the last good files stay: {err}",
                event="secrets_unavailable",
                failures=err.failures,
            )
            return (
                EXIT_EXPIRED if any(f.kind == "expired" for f in err.failures) else err.exit_status
            )
        log("error", f"refresh failed; the last good files stay: {err}", event="refresh_failed")
        return err.exit_status
    except Exception as err:
        _record_failure(directory, started, ())
        log(
            "error",
            f"refresh failed: internal error: {type(err).__name__} (--log-level debug shows where)",
            event="internal_error",
        )
        log("debug", REDACTOR.redact("".join(traceback.format_exception(err))), event="traceback")
        return EXIT_SOFTWARE
    finally:
        text = "".join(f"{key} {value}\n" for key, value in report.items())
        try:
            os.write(report_fd, text.encode())
            os.close(report_fd)
        except OSError:
            pass  # the supervisor is gone: nobody to tell


def _parse(argv: list[str]) -> tuple[str, int | None]:
    """``--dir DIR --report-fd N`` (a refresh) or ``--dir DIR --release`` (the last run)."""
    if len(argv) == 3 and argv[0] == "--dir" and argv[2] == "--release":
        return argv[1], None
    options = dict(zip(argv[::2], argv[1::2], strict=False))
    if len(argv) != 4 or set(options) != {"--dir", "--report-fd"}:
        raise ValueError("usage: secretinit refresh-run --dir DIR (--report-fd N | --release)")
    return options["--dir"], int(options["--report-fd"])


def _release(directory: str) -> int:
    """The last run of a series whose command exited: each provider ends what it holds."""
    try:
        start = _repeat_start(directory, dict(os.environ))
    except Stopped as stopped:
        return 128 + stopped.number
    except SecretInitError as err:
        log("warning", f"cannot release what the providers hold: {err}", event="release_failed")
        return err.exit_status
    try:
        _restore_providers(start, directory)
        for provider in start.providers.values():
            try:
                provider.release()
            except Exception as err:  # the others still release theirs
                log(
                    "warning",
                    f"{provider.scheme}: releasing what it holds failed ({type(err).__name__}); "
                    "it ends with its TTL",
                    event="release_failed",
                )
    except Stopped as stopped:
        return 128 + stopped.number
    finally:
        start.close()
        try:
            os.unlink(os.path.join(directory, STATE_DIRECTORY, PROVIDER_STATE))
        except OSError:
            pass  # nothing was kept, or the directory is gone
    return 0


def _repeat_start(directory: str, inherited: dict[str, str]) -> Start:
    """The start again, from its record: its logging, modules, environment and declaration."""
    try:
        record = _read_record(directory)
    except (OSError, ValueError) as err:
        configure_logging("text", "info")
        reason = err.strerror if isinstance(err, OSError) else str(err)
        raise UsageError(f"cannot refresh {directory}: its start record: {reason}") from None
    configure_logging(record["log_format"], record["log_level"])
    sys.path[:] = [entry for entry in record.get("sys_path", sys.path) if isinstance(entry, str)]
    environ = dict(record["environ"])
    # The runs have the user's ids (--user): the SDKs look in its home.
    if "HOME" in inherited:
        environ["HOME"] = inherited["HOME"]
    os.environ.clear()  # before any provider is imported: some SDKs read it then
    os.environ.update(environ)
    options = StartOptions(
        config=record["config"],
        env_file=record["env_file"],
        dir=directory,
        user=record["user"],
        timeout=record["timeout"],
    )
    return prepare(options, environ, ProviderRegistry())


def _refresh(directory: str, report: dict[str, str], started: float) -> int:
    """Prepare, resolve and write as the start did; fill ``report``; raise what failed."""
    inherited = dict(os.environ)  # the command's environment, as the supervisor holds it
    start = _repeat_start(directory, inherited)
    report["secrets"] = str(len(start.declaration.secrets))
    try:
        _restore_providers(start, directory)
        try:
            resolution = resolve_all(start)
            secret_dir = open_secret_directory(directory, start.owner, warn=False)
            try:
                files = files_to_write(start.declaration, resolution)
                # Held until the report says what changed: the files did.
                with held_stop_signals():
                    # The supervisor removes the generation this replaces, a moment later.
                    changed = write_secret_files(secret_dir, files, start.owner, True)
                    if changed:
                        report["changed"] = " ".join(changed)
                exported = _exports_changed(start, resolution, secret_dir, inherited)
                if exported:
                    report["environ"] = " ".join(exported)
            finally:
                secret_dir.close()
        except BaseException:
            start.abandon()
            raise
        finally:
            within = _save_providers(start, directory)
            if within is not None:
                report["next"] = f"{within:.3f}"
    finally:
        start.close()
    _write_state(directory, HEALTH_FILE, _previous(directory).succeeded_now(started).render())
    log(
        "debug",
        f"refreshed {len(resolution.values)} secrets in {time.time() - started:.3f} s: "
        f"{len(changed)} files changed",
        event="refresh_done",
        secrets=len(resolution.values),
        changed=changed,
    )
    return 0


def _exports_changed(
    start: Start, resolution: Resolution, directory: SecretDirectory, inherited: dict[str, str]
) -> list[str]:
    """The secrets whose export in the command's environment changed; the new one saved."""
    exports = child_environment({}, start, resolution, directory)
    environ = dict(inherited)
    changed = []
    for spec in start.declaration.secrets:
        keys = (spec.name, f"{spec.name}_FILE")
        if any(exports.get(key) != inherited.get(key) for key in keys):
            changed.append(spec.name)
            for key in keys:
                if key in exports:
                    environ[key] = exports[key]
                else:
                    environ.pop(key, None)
    if changed:
        data = b"".join(
            os.fsencode(key) + b"=" + os.fsencode(value) + b"\0" for key, value in environ.items()
        )
        _write_state(directory.path, COMMAND_ENVIRONMENT, data)
    return changed


def _read_record(directory: str) -> dict[str, Any]:
    with _state_file(directory, START_RECORD) as stream:
        record = json.loads(stream.read())
    if not isinstance(record, dict) or record.get("version") != RECORD_VERSION:
        raise ValueError("it was written by another version of secretinit")
    return record


def _restore_providers(start: Start, directory: str) -> None:
    try:
        with _state_file(directory, PROVIDER_STATE) as stream:
            states = json.loads(stream.read())
    except FileNotFoundError:
        states = {}
    except (OSError, ValueError) as err:
        log(
            "warning",
            f"the providers' state is unreadable ({type(err).__name__}): going on without it",
            event="provider_state_lost",
        )
        states = {}
    for scheme, provider in start.providers.items():
        provider.refreshing = True
        saved = states.get(scheme) if isinstance(states, dict) else None
        provider.restore_state(saved if isinstance(saved, dict) else {})


def _save_providers(start: Start, directory: str | SecretDirectory) -> float | None:
    """Save every provider's state; return the soonest refresh a provider asked for."""
    states: dict[str, Any] = {}
    within: float | None = None
    for scheme, provider in start.providers.items():
        try:
            saved = dict(provider.save_state())
            json.dumps(saved)  # one provider's bug must not lose the others' state
            asked = provider.refresh_within()
        except Exception as err:
            log(
                "warning",
                f"{scheme}: its state cannot be saved ({type(err).__name__})",
                event="provider_state_lost",
            )
            continue
        if saved:
            states[scheme] = saved
        if asked is not None:
            within = asked if within is None else min(within, asked)
    path = directory.path if isinstance(directory, SecretDirectory) else directory
    try:
        if states:
            _write_state(directory, PROVIDER_STATE, json.dumps(states).encode(), start.owner)
        else:  # nothing kept: nothing stale to restore either
            os.unlink(os.path.join(path, STATE_DIRECTORY, PROVIDER_STATE))
    except FileNotFoundError:
        pass
    except (OSError, WriteFailed) as err:
        log("warning", f"the providers' state cannot be saved: {err}", event="provider_state_lost")
    return within


def _previous(directory: str) -> Health:
    try:
        health = read_health(directory)
    except (OSError, ValueError):
        health = None
    if health is None:
        now = time.time()
        return Health(None, now, now, now)
    return health


def _record_failure(directory: str, now: float, names: tuple[str, ...]) -> None:
    """The health record after a failed run; kept as it was if it cannot be written."""
    try:
        _write_state(directory, HEALTH_FILE, _previous(directory).failed_now(now, names).render())
    except WriteFailed as err:
        log("warning", str(err), event="health_unwritable")


@contextmanager
def _state_file(directory: str, name: str) -> Iterator[BinaryIO]:
    """File ``name`` of the private state directory, read without following a symlink."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(os.path.join(directory, STATE_DIRECTORY, name), flags)
    with os.fdopen(fd, "rb") as stream:
        yield stream


def _write_state(
    directory: str | SecretDirectory, name: str, data: bytes, owner: FileOwner | None = None
) -> None:
    """Replace file ``name`` of the private state directory (0600).

    In a refresh run the files are the run's own: it has the owner's ids.
    The start passes ``owner`` (root writes them for the application's user).
    """
    owner = owner or FileOwner(os.geteuid(), os.getegid())
    path = directory.path if isinstance(directory, SecretDirectory) else directory
    # O_PATH: only a name for the owner's *at calls (made with the owner's
    # ids), which root without DAC_OVERRIDE could not open for reading.
    flags = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as err:
        raise WriteFailed(f"cannot open {path}: {err.strerror}") from None
    secret_dir = SecretDirectory(path, fd, created=False, filesystem=None)
    try:
        state = open_state_directory(secret_dir, owner)
        try:
            write_private_file(state, name, data, owner)
        finally:
            state.close()
    finally:
        secret_dir.close()


def _absolute(path: object) -> str | None:
    return os.path.abspath(path) if isinstance(path, str) else None
