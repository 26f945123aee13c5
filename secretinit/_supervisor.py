"""The resident supervisor: runs the application, forwards signals, reaps orphans,
and with ``--refresh`` keeps the secret files current.

Once the secret files are written, ``secretinit run`` replaces itself (same
PID, so still PID 1 in a container) with ``python -I -S -B`` running
``_supervisor_main.py``, which imports this module from its bytecode (a
script would be compiled at every start). It imports only the standard
library, and of it only what it runs: a resident process holding click, a
cloud SDK and its HTTP stack would cost tens of MB for the whole life of the
application and gain nothing.

It reads as its steps, as tini and dumb-init do:

1. the caller has already blocked the forwarded signals and SIGCHLD, so a
   ``docker stop`` that lands during start-up waits in the pending set
   instead of being lost (a PID 1 ignores an unhandled SIGTERM);
2. become a child subreaper when not PID 1, so orphans are reaped here too;
3. drop root for good (``--user``) before anything of the application runs;
4. spawn the command in its own process group with the caller's signal mask
   and Python's own changed dispositions (SIGPIPE, SIGXFSZ) restored;
5. loop (:class:`Supervisor`): wait for a signal or the next timer; forward
   the signal, or reap every exited child; after a forwarded SIGTERM or
   SIGINT, if ``--grace`` was given, give the child that long, then SIGKILL
   its process group (without it, as tini, the orchestrator's stop period is
   the only deadline); a stop of secretinit's own (``--on-change restart`` or
   ``exit``) always has one: ``--grace``, else :data:`OWN_STOP_GRACE`;
6. remove the secret files (``--cleanup``) and exit with the child's status:
   its exit code, 128+N for death by signal N, 127 if the command was not
   found, 126 if it could not be executed.

Refresh (``--refresh``)
-----------------------

The supervisor holds no SDK, so it does not fetch: each period (shortened by
up to 10 % of jitter, so that a fleet spreads its requests) it starts a
short-lived *refresh run*, ``secretinit refresh-run`` through
:func:`program_argv`, in its own process group with the command's
environment. The run re-reads everything the start read (the start record
that the first run left in the directory's private ``..secretinit/``
directory: the start's options and environment), fetches every secret with
the same requests as the start, writes a new generation of files only when
something changed, and reports on a pipe (never through a file the
application could race): ``secrets N``, ``changed NAME...``, ``environ
NAME...`` (exported values that changed: the command's environment for a
restart was rewritten in ``..secretinit/environ``) and ``next SECONDS`` (a
provider wants the next run that soon). Its exit status says how it went:
0, or the start's statuses (69 a secret could not be fetched, 73 a file
could not be written, ...), or :data:`EXIT_EXPIRED`.

- A change leads to the ``--on-change`` action: ``signal:NAME`` sent to the
  command, ``restart`` (SIGTERM, ``--grace``, then the same argv again with
  the environment the last refresh computed), ``exit`` (stop the command,
  exit :data:`EXIT_CHANGED`), or ``none``. The action runs at once after the
  refresh that found the change; changes found within :data:`DEBOUNCE`
  seconds after an action (a restart's grace included) are gathered into
  one more action at the end of that window.
- A failed run keeps the last good files (it never swapped them); the next
  one comes after an exponential backoff with jitter, from
  :data:`BACKOFF_FIRST` seconds up to the period. :data:`EXIT_EXPIRED`
  (a value the command holds has run out and cannot be replaced) stops the
  command with that status under ``--on-change exit``.
- The generation a run replaced is removed :data:`TIDY_DELAY` after it,
  when no other run is going (see secretinit._writer).
- A stop signal ends a run in progress (SIGTERM to its group; it removes
  what it staged), then SIGKILL after :data:`REFRESH_STOP_TIMEOUT`; what a
  killed run left (a generation never swapped, a temporary file) is removed
  here. A run that overruns ``--refresh-limit`` is killed alike.
- Without a command (``fetch --refresh``: a sidecar) the loop only
  refreshes, until SIGTERM or SIGINT, then exits 0.
- Once the command exited for good (``run --refresh``), a last run
  (``refresh-run --release``, bounded by :data:`RELEASE_TIMEOUT`) lets the
  providers end what they kept (a Vault login token and its leases), when
  they kept anything (``..secretinit/providers.json``). A sidecar has none:
  the application of another container may still hold those credentials.

The main process builds this script's arguments with :func:`supervisor_argv`.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs start-up time; only mypy reads the annotations
    import signal
    from typing import Any, NoReturn
else:
    # The C module that ``signal`` wraps: the same functions and numbers, but
    # ``signal`` builds three enum classes at import, and the enum module they
    # need costs more than the rest of this process's start. Signal names come
    # from signal_name() and signal_number() instead of signal.Signals.
    import _signal as signal

FORWARDED_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)
# A stop secretinit decides itself (--on-change restart or exit) waits this
# long for the command when no --grace was given: nobody else would end it.
OWN_STOP_GRACE = 10.0
# After one of these reaches the child, it has --grace seconds to exit.
STOPPING_SIGNALS = (signal.SIGTERM, signal.SIGINT)
WAITED_SIGNALS = frozenset((*FORWARDED_SIGNALS, signal.SIGCHLD))

# This file runs as a standalone script, so it keeps its own copies of the
# exit statuses of secretinit._errors that it uses.
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127
EXIT_SOFTWARE = 70
EXIT_CHANGED = 75
EXIT_EXPIRED = 77
_PR_SET_CHILD_SUBREAPER = 36
LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}

# The secret directory's layout, which the writer makes (secretinit._writer)
# and this file removes (--cleanup, what a killed refresh run left):
#   NAME -> ..data/NAME              what NAME_FILE names, for the app's whole life
#   ..data -> ..2025_01_31_12_00_00.<random>   swapped by rename(2) for each new set
#   ..2025_01_31_12_00_00.<random>/NAME         one generation: the files themselves
#   ..secretinit/                    private state of a refresh series (0700)
# Names starting with ".." are reserved: no secret file may take one.
DATA_LINK = "..data"
STATE_DIRECTORY = "..secretinit"
TEMPORARY_PREFIX = ".secretinit-"
START_RECORD = "start.json"
PROVIDER_STATE = "providers.json"
COMMAND_ENVIRONMENT = "environ"

# Refresh timing (documented in the README, "Keeping secrets current").
REFRESH_JITTER = 0.1  # each wait is the period shortened by up to this fraction
MIN_REFRESH_DELAY = 1.0  # however soon a provider asks, never sooner than this
BACKOFF_FIRST = 5.0  # the wait after a first failed refresh, doubled after each
DEBOUNCE = 5.0  # changes within this long after an action make one more action
REFRESH_STOP_TIMEOUT = 5.0  # a refresh run stopped by SIGTERM gets this long before SIGKILL
RELEASE_TIMEOUT = 10.0  # the last run, after the command exited, ends by then
# A refresh run leaves the generation it replaced; it is removed this long
# after the run (before the next run, which never comes sooner), so a reader
# whose lookup of NAME -> ..data/NAME went through it just before the swap
# still finds its file.
TIDY_DELAY = MIN_REFRESH_DELAY
ON_CHANGE_CHOICES = "signal:NAME, restart, exit or none"


_signal_names: dict[int, str] = {}


def _signal_table() -> dict[str, int]:
    """Every signal name (aliases too) and its number, as ``signal.Signals`` holds them."""
    return {
        name: number
        for name, number in vars(signal).items()
        if name.startswith("SIG") and not name.startswith("SIG_") and isinstance(number, int)
    }


def signal_name(number: int) -> str:
    """``SIGTERM`` for 15: the name ``signal.Signals(number).name`` gives.

    Of two names for one number (SIGABRT and SIGIOT) the first in alphabetical
    order, as the enum makes it. A number with no name is shown as such.
    """
    if not _signal_names:
        for name, value in sorted(_signal_table().items(), key=lambda item: (item[1], item[0])):
            _signal_names.setdefault(value, name)
    return _signal_names.get(number, f"signal {number}")


def signal_number(name: str) -> int | None:
    """The number of signal ``name`` (``SIGHUP``), or None if there is no such signal."""
    return _signal_table().get(name)


def format_log_line(log_format: str, level: str, message: str, fields: dict[str, Any]) -> str:
    """One log line, shared by the main process and the supervisor."""
    if log_format == "json":
        import json

        now = time.time()
        stamp = (
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
        )
        record = {"time": stamp, "level": level, "logger": "secretinit", "message": message}
        record.update(fields)
        return json.dumps(record, ensure_ascii=False, default=str)
    return f"secretinit: {level}: {message}"


class SupervisorLog:
    """The supervisor's own log: one line per event on stderr."""

    def __init__(self, log_format: str, level: str) -> None:
        self.log_format = log_format
        self.threshold = LEVELS[level]
        if log_format == "json":
            # Now, while root: after --user drops it, the interpreter's own
            # files may be out of reach, and a log line must never fail.
            import json  # noqa: F401

    def __call__(self, level: str, message: str, **fields: Any) -> None:
        if LEVELS[level] >= self.threshold:
            line = format_log_line(self.log_format, level, message, fields)
            try:
                os.write(2, (line + "\n").encode("utf-8", "replace"))
            except OSError:
                pass  # a closed stderr must not stop the supervisor


class SupervisorOptions:
    """Everything the supervisor needs, carried on its command line."""

    def __init__(self, command: list[str]) -> None:
        self.command = command  # empty: no command, only refreshes (a sidecar)
        self.grace: float | None = None  # no deadline of its own: the orchestrator's
        self.log_format = "text"
        self.log_level = "info"
        self.user: tuple[int, int, tuple[int, ...]] | None = None
        self.child_sigmask: tuple[int, ...] = ()
        self.cleanup_dir: str | None = None
        self.cleanup_files: list[str] = []
        self.remove_dir = False
        self.refresh: float | None = None  # the period, in seconds
        self.refresh_dir: str | None = None  # the secret directory the runs keep current
        self.refresh_first: float | None = None  # a provider of the start asked this soon
        self.refresh_limit = 90.0  # a run still going after this long is killed
        self.on_change = "none"


def program_argv(*args: str) -> list[str]:
    """The command line that runs secretinit's own CLI with ``args`` (a refresh run, ...).

    With :func:`supervisor_argv`, the only place that knows how secretinit
    executes itself: the package run by the same interpreter, in the Python
    form and in the self-contained bundle alike (the bundle carries its
    interpreter, /opt/secretinit/bin/python3: bundle/build.py; bench/bundle
    says why it is not a frozen executable).
    """
    return [sys.executable, "-I", "-m", "secretinit", *args]


def supervisor_argv(options: SupervisorOptions) -> list[str]:
    """The ``python -I -S -B _supervisor_main.py ...`` command line for ``options``.

    In the bundle the same, from bytecode only: ``_supervisor_main.pyc``, the
    sibling of this module's own ``.pyc``.
    """
    here = os.path.abspath(__file__)
    suffix = os.path.splitext(here)[1]  # .py, or .pyc where only bytecode ships
    script = os.path.join(os.path.dirname(here), "_supervisor_main" + suffix)
    argv = [sys.executable, "-I", "-S", "-B", script]
    if options.grace is not None:
        argv += ["--grace", repr(options.grace)]
    argv += ["--log-format", options.log_format, "--log-level", options.log_level]
    if options.user is not None:
        uid, gid, groups = options.user
        argv += ["--user", f"{uid}:{gid}:{','.join(map(str, groups))}"]
    if options.child_sigmask:
        argv += ["--child-sigmask", ",".join(map(str, options.child_sigmask))]
    if options.cleanup_dir is not None:
        argv += ["--cleanup-dir", options.cleanup_dir]
        for name in options.cleanup_files:
            argv += ["--cleanup-file", name]
        if options.remove_dir:
            argv.append("--remove-dir")
    if options.refresh is not None and options.refresh_dir is not None:
        argv += ["--refresh", repr(options.refresh), "--refresh-dir", options.refresh_dir]
        argv += ["--refresh-limit", repr(options.refresh_limit), "--on-change", options.on_change]
        if options.refresh_first is not None:
            argv += ["--refresh-first", repr(options.refresh_first)]
    return [*argv, "--", *options.command]


def parse_arguments(argv: list[str]) -> SupervisorOptions:
    """The inverse of :func:`supervisor_argv` (without the interpreter part)."""
    split = argv.index("--")
    options = SupervisorOptions(argv[split + 1 :])
    items = iter(argv[:split])
    for flag in items:
        if flag == "--remove-dir":
            options.remove_dir = True
            continue
        value = next(items)
        if flag == "--grace":
            options.grace = float(value)
        elif flag == "--log-format":
            options.log_format = value
        elif flag == "--log-level":
            options.log_level = value
        elif flag == "--user":
            uid, gid, groups = value.split(":")
            options.user = (int(uid), int(gid), tuple(int(g) for g in groups.split(",") if g))
        elif flag == "--child-sigmask":
            options.child_sigmask = tuple(int(s) for s in value.split(","))
        elif flag == "--cleanup-dir":
            options.cleanup_dir = value
        elif flag == "--cleanup-file":
            options.cleanup_files.append(value)
        elif flag == "--refresh":
            options.refresh = float(value)
        elif flag == "--refresh-dir":
            options.refresh_dir = value
        elif flag == "--refresh-first":
            options.refresh_first = float(value)
        elif flag == "--refresh-limit":
            options.refresh_limit = float(value)
        elif flag == "--on-change":
            options.on_change = parse_on_change(value)
        else:
            raise ValueError(f"unknown supervisor option {flag}")
    if not options.command and (options.refresh is None or options.refresh_dir is None):
        raise ValueError("no command to supervise")
    return options


def parse_on_change(text: str) -> str:
    """The normal form of an ``--on-change`` action (``signal:HUP``, ``restart``, ...).

    Raises ValueError saying what is accepted.
    """
    value = text.strip()
    if value.lower() in ("restart", "exit", "none"):
        return value.lower()
    kind, colon, name = value.partition(":")
    if colon and kind.lower() == "signal":
        upper = name.strip().upper()
        full = upper if upper.startswith("SIG") else "SIG" + upper
        if signal_number(full) is not None:
            return "signal:" + full[3:]
        raise ValueError(f"{text!r} names no signal: write signal:HUP, signal:USR1, ...")
    raise ValueError(f"{text!r} is not an action: expected {ON_CHANGE_CHOICES}")


def become_subreaper() -> None:
    """Adopt orphaned descendants, as PID 1 does, so none stays a zombie."""
    try:
        prctl = _libc_function("prctl")
    except Exception:  # the C module changed: the ctypes package does the same
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _libc_function(name: str) -> Any:
    """``ctypes.CDLL(None, use_errno=True).NAME``, made from the C module ctypes is built on.

    Importing the ctypes package costs three times what the rest of the
    supervisor's start does, for one prctl(2) call when it is not PID 1.
    """
    import _ctypes

    class Int(_ctypes._SimpleCData):  # type: ignore[type-arg]  # ctypes.c_int
        _type_ = "i"

    class Function(_ctypes.CFuncPtr):
        _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
        _restype_ = Int

    class Library:  # what CDLL(None) hands a function: the process's own symbols
        _handle = _ctypes.dlopen(None, _ctypes.RTLD_LOCAL)  # type: ignore[arg-type]

    return Function((name, Library()))  # type: ignore[arg-type]  # anything with a _handle


def drop_privileges(uid: int, gid: int, groups: tuple[int, ...]) -> None:
    """Become ``uid``/``gid`` with exactly ``groups``; order matters (groups, gid, uid)."""
    os.setgroups(list(groups))
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise PermissionError("could not drop privileges")


class CommandFailed(Exception):
    """The command could not be started: the shell's exit status and why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def spawn(
    command: list[str], child_sigmask: tuple[int, ...], env: dict[str, str], previous: int = 0
) -> int:
    """Start ``command`` in its own process group with ``env``; return its PID.

    With a terminal to hand over, fork + exec, because the child must take
    the terminal's foreground (``docker run -it``) before it runs, as tini
    does: when this process has it, or when ``previous`` (the group of the
    command it restarts) had it. Whether exec worked comes back through a
    close-on-exec pipe. Without one (the usual container), posix_spawn.
    """
    take_terminal = _owns_terminal(previous)
    # Searched here: after fork the child may no longer read the interpreter's
    # own files (--user), so it must not import anything (os.execvpe would).
    candidates = _executable_candidates(command[0], env)
    if not take_terminal:
        return _spawn_without_terminal(command, candidates, child_sigmask, env)
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # the child: nothing here may return
        missing = unusable = 0
        try:
            os.close(read_end)
            os.setpgid(0, 0)
            if take_terminal:
                # tcsetpgrp from what is now a background group raises SIGTTOU.
                signal.signal(signal.SIGTTOU, signal.SIG_IGN)
                os.tcsetpgrp(0, os.getpgrp())
                signal.signal(signal.SIGTTOU, signal.SIG_DFL)
            # Python ignores these at start-up; exec would keep them ignored.
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, child_sigmask)
            for candidate in candidates:
                try:
                    os.execve(candidate, command, env)
                except OSError as err:
                    # As execvp: one that is there but cannot run wins over "not found".
                    if err.errno in (2, 20):  # ENOENT, ENOTDIR
                        missing = missing or err.errno
                    else:
                        unusable = unusable or err.errno or 8
        except BaseException as err:
            unusable = getattr(err, "errno", None) or 8  # ENOEXEC: it could not be run
        finally:
            os.write(write_end, str(unusable or missing or 2).encode())
            os._exit(EXIT_NOT_FOUND)
    os.close(write_end)
    try:
        os.setpgid(pid, pid)  # also here: no window in which the group does not exist
    except OSError:
        pass  # the child already exec'd (EACCES) or exited
    with os.fdopen(read_end, "rb") as pipe:
        failure = pipe.read()
    if not failure:
        return pid
    os.waitpid(pid, 0)
    raise command_failed(command[0], int(failure))


def _spawn_without_terminal(
    command: list[str], candidates: list[str], child_sigmask: tuple[int, ...], env: dict[str, str]
) -> int:
    """:func:`spawn` by posix_spawn: the same group, mask, dispositions and exit statuses.

    glibc's posix_spawn is vfork + exec: no copy of this process's page
    tables and no copy-on-write faults while the child gets to exec, which a
    fork of even this small interpreter costs; an exec that fails is reported
    by the call itself. Python ignores SIGPIPE and SIGXFSZ at start-up, which
    exec would keep: setsigdef restores them.
    """
    missing = unusable = 0
    for candidate in candidates:
        try:
            return os.posix_spawn(
                candidate,
                command,
                env,
                setpgroup=0,
                setsigmask=child_sigmask,
                setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
            )
        except OSError as err:
            # As execvp: one that is there but cannot run wins over "not found".
            if err.errno in (2, 20):  # ENOENT, ENOTDIR
                missing = missing or err.errno
            else:
                unusable = unusable or err.errno or 8
    raise command_failed(command[0], unusable or missing or 2)


def _executable_candidates(program: str, env: dict[str, str]) -> list[str]:
    """The paths exec tries for ``program``, in order, as execvp searches PATH."""
    if "/" in program:
        return [program]
    path = env.get("PATH") or os.defpath
    return [os.path.join(directory or ".", program) for directory in path.split(os.pathsep)]


def command_failed(program: str, error: int) -> CommandFailed:
    """The shell's verdict on an exec that failed with ``error`` (an errno)."""
    if error in (2, 20):  # ENOENT, ENOTDIR
        return CommandFailed(EXIT_NOT_FOUND, f"{program}: command not found")
    return CommandFailed(EXIT_CANNOT_EXECUTE, f"{program}: cannot execute: {os.strerror(error)}")


def _owns_terminal(previous: int = 0) -> bool:
    try:
        return os.isatty(0) and os.tcgetpgrp(0) in (os.getpgrp(), previous)
    except OSError:
        return False


def exit_status(wait_status: int) -> int:
    """The shell's exit status for a wait status: the code, or 128+N for signal N."""
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


def reap() -> list[tuple[int, int]]:
    """Reap every exited child (the command, a refresh run, adopted orphans): (pid, status)."""
    reaped: list[tuple[int, int]] = []
    while True:
        try:
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped.append((pid, wait_status))


def own_stop_grace(grace: float | None) -> float:
    """The deadline of a stop secretinit decided itself: ``--grace``, else a default."""
    return OWN_STOP_GRACE if grace is None else grace


class RefreshRun:
    """A refresh run in progress: its PID, the read end of its report pipe, its deadline."""

    def __init__(self, pid: int, report: int, deadline: float) -> None:
        self.pid = pid
        self.report = report
        self.deadline = deadline
        self.stopping = False


class Report:
    """What a refresh run said on its pipe (see the module docstring)."""

    def __init__(self, text: str) -> None:
        self.secrets = 0
        self.changed: list[str] = []
        self.environ: list[str] = []
        self.within: float | None = None
        for line in text.splitlines():
            word, _, rest = line.partition(" ")
            try:
                if word == "secrets":
                    self.secrets = int(rest)
                elif word == "changed":
                    self.changed = rest.split()
                elif word == "environ":
                    self.environ = rest.split()
                elif word == "next":
                    self.within = float(rest)
            except ValueError:
                continue  # a line cut short by a killed run: the exit status says the rest


class Supervisor:
    """Step 5: the command, the signals it is sent, and the refresh runs.

    One loop waits for the next signal or timer: the child's grace, a refresh
    run's deadline, the next refresh, the next ``--on-change`` action.
    """

    def __init__(self, options: SupervisorOptions, log: SupervisorLog) -> None:
        self.options = options
        self.log = log
        self.program = options.command[0] if options.command else "secretinit"
        # The command's environment, and the refresh runs'; a refresh that
        # changed an exported value replaces it for the next restart.
        self.environ = dict(os.environ)
        self.child: int | None = None
        self.wait_status: int | None = None  # the last command's, once it exited
        self.kill_at: float | None = None  # SIGKILL the command's group then
        self.stopping = False  # no more refreshes nor actions: the end is near
        self.restarting = False
        self.final_status: int | None = None  # exit with this instead of the command's
        self.refresh: RefreshRun | None = None
        self.next_refresh: float | None = None
        self.failures = 0
        self.gathered: dict[str, None] = {}  # names changed since the last action
        self.action_at: float | None = None
        self.last_action = float("-inf")
        self.tidy_at: float | None = None

    def run(self) -> int:
        """Supervise until the command exited (or, without one, until a stop signal)."""
        if self.options.command:
            try:
                self.start_command()
            except CommandFailed:  # the series ends before it began: nothing uses its leases
                if self.options.refresh is not None:
                    self.release()
                raise
        if self.options.refresh is not None:
            delay = jittered(self.options.refresh)
            if self.options.refresh_first is not None:
                delay = min(delay, max(MIN_REFRESH_DELAY, self.options.refresh_first))
            self.next_refresh = time.monotonic() + delay
        while not (self.stopping and self.child is None and self.refresh is None):
            wake = self.next_wakeup()
            info: signal.struct_siginfo | None
            if wake is None:
                info = signal.sigwaitinfo(WAITED_SIGNALS)
            else:
                remaining = wake - time.monotonic()
                info = signal.sigtimedwait(WAITED_SIGNALS, remaining) if remaining > 0 else None
            if info is None:
                self.on_timers(time.monotonic())
            elif info.si_signo == signal.SIGCHLD:
                self.on_children()
            else:
                self.on_signal(info.si_signo)
        if self.options.command and self.options.refresh is not None:
            self.release()
        if self.final_status is not None:
            return self.final_status
        return 0 if self.wait_status is None else exit_status(self.wait_status)

    def release(self) -> None:
        """The command exited for good: a last run ends what the providers hold (leases).

        Only when a provider kept something; bounded by :data:`RELEASE_TIMEOUT`.
        """
        state = os.path.join(self.options.refresh_dir or "", STATE_DIRECTORY, PROVIDER_STATE)
        if not os.path.exists(state):
            return
        try:
            pid = self.spawn_run("--release")
        except OSError as err:
            self.log("warning", f"cannot release: {err.strerror}", event="release_failed")
            return
        deadline = time.monotonic() + RELEASE_TIMEOUT
        while True:
            for reaped, wait_status in reap():
                if reaped == pid:
                    self.log(
                        "debug",
                        f"release run ended (status {exit_status(wait_status)})",
                        event="released",
                    )
                    return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.log(
                    "warning", "the release did not end in time; killing it", event="release_killed"
                )
                _signal_group(pid, signal.SIGKILL, also_pid=True)
                os.waitpid(pid, 0)
                return
            signal.sigtimedwait((signal.SIGCHLD,), remaining)

    # The command.

    def start_command(self, previous: int = 0) -> None:
        self.child = spawn(self.options.command, self.options.child_sigmask, self.environ, previous)
        self.log("debug", f"started {self.program} as PID {self.child}", event="child_started")

    def stop_command(self, final_status: int | None) -> None:
        """SIGTERM the command, SIGKILL its group after --grace; then exit (unless restarting)."""
        if final_status is not None:
            self.final_status = final_status
            self.stop()
        if self.child is None:
            return
        try:
            os.kill(self.child, signal.SIGTERM)
        except ProcessLookupError:
            pass  # it exited; its SIGCHLD is pending
        if self.kill_at is None:
            self.kill_at = time.monotonic() + own_stop_grace(self.options.grace)

    def on_command_exit(self, wait_status: int) -> None:
        group = self.child or 0  # its process group: a restart takes its terminal back
        self.child = None
        self.wait_status = wait_status
        self.kill_at = None
        status = exit_status(wait_status)
        how = (
            f"was killed by {signal_name(os.WTERMSIG(wait_status))}"
            if os.WIFSIGNALED(wait_status)
            else "exited"
        )
        if self.restarting and not self.stopping:
            self.restarting = False
            self.log(
                "info",
                f"{self.program} {how} (status {status}); starting it again",
                event="child_restarted",
                status=status,
            )
            # It reads the files as they are now: what was gathered is covered.
            self.gathered.clear()
            self.action_at = None
            try:
                self.start_command(group)
            except CommandFailed as err:
                self.log("error", str(err), event="command_failed", status=err.status)
                self.final_status = err.status
                self.stop()
            return
        self.log(
            "info", f"{self.program} {how} (status {status})", event="child_exited", status=status
        )
        self.stop()

    def stop(self) -> None:
        """No more refreshes nor actions; a refresh run in progress is asked to stop."""
        self.stopping = True
        self.next_refresh = None
        self.action_at = None
        self.tidy_at = None
        if self.refresh is not None and not self.refresh.stopping:
            self.refresh.stopping = True
            self.refresh.deadline = time.monotonic() + REFRESH_STOP_TIMEOUT
            _signal_group(self.refresh.pid, signal.SIGTERM)

    # The loop's events.

    def next_wakeup(self) -> float | None:
        times = [self.kill_at, self.next_refresh, self.action_at, self.tidy_at]
        if self.refresh is not None:
            times.append(self.refresh.deadline)
        pending = [t for t in times if t is not None]
        return min(pending) if pending else None

    def on_timers(self, now: float) -> None:
        if self.kill_at is not None and now >= self.kill_at:
            self.log(
                "warning",
                f"the command did not exit {own_stop_grace(self.options.grace):g} s after being "
                "asked; killing it",
                event="grace_expired",
                pid=self.child,
            )
            if self.child is not None:
                _signal_group(self.child, signal.SIGKILL, also_pid=True)
            self.kill_at = None
        if self.refresh is not None and now >= self.refresh.deadline:
            self.log(
                "warning",
                "the refresh did not end in time; killing it"
                if not self.refresh.stopping
                else "the refresh did not stop in time; killing it",
                event="refresh_killed",
                pid=self.refresh.pid,
            )
            _signal_group(self.refresh.pid, signal.SIGKILL, also_pid=True)
            self.refresh.deadline = float("inf")  # its SIGCHLD comes next
        # Before the next refresh: the next one never comes sooner than the tidy.
        if self.tidy_at is not None and now >= self.tidy_at:
            self.tidy_at = None
            if self.refresh is None:
                remove_stale_entries(self.options.refresh_dir, self.log)
        if self.next_refresh is not None and now >= self.next_refresh:
            self.next_refresh = None
            if self.refresh is None and not self.stopping:
                self.start_refresh()
        if self.action_at is not None and now >= self.action_at:
            self.act()

    def on_children(self) -> None:
        for pid, wait_status in reap():
            if pid == self.child:
                self.on_command_exit(wait_status)
            elif self.refresh is not None and pid == self.refresh.pid:
                self.on_refresh_exit(wait_status)

    def on_signal(self, number: int) -> None:
        name = signal_name(number)
        if self.child is not None:
            level = "info" if number in STOPPING_SIGNALS else "debug"
            self.log(
                level, f"forwarding {name} to the command", event="signal_forwarded", signal=name
            )
            try:
                os.kill(self.child, number)
            except ProcessLookupError:
                pass  # it exited; its SIGCHLD is pending
            if (
                number in STOPPING_SIGNALS
                and self.kill_at is None
                and self.options.grace is not None
            ):
                self.kill_at = time.monotonic() + self.options.grace
        elif not self.options.command and number not in STOPPING_SIGNALS:
            self.log(
                "debug", f"{name} ignored: no command to forward it to", event="signal_ignored"
            )
        if number in STOPPING_SIGNALS:
            self.stop()

    # Refresh runs.

    def spawn_run(self, *args: str) -> int:
        """Start ``secretinit refresh-run --dir DIR ARGS...``; its PID."""
        directory = self.options.refresh_dir
        assert directory is not None  # parse_arguments: --refresh comes with --refresh-dir
        argv = program_argv("refresh-run", "--dir", directory, *args)
        return os.posix_spawn(
            argv[0],
            argv,
            self.environ,
            file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)],
            setpgroup=0,  # its own group: the command's signals never reach it
            setsigmask=self.options.child_sigmask,
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
        )

    def start_refresh(self) -> None:
        report, write_end = os.pipe2(os.O_CLOEXEC)
        os.set_inheritable(write_end, True)  # the run's only inherited descriptor but 0-2
        try:
            pid = self.spawn_run("--report-fd", str(write_end))
        except OSError as err:
            os.close(report)
            self.log("warning", f"cannot start a refresh: {err.strerror}", event="refresh_failed")
            self.failures += 1
            self.schedule(None)
            return
        finally:
            os.close(write_end)
        deadline = time.monotonic() + self.options.refresh_limit
        self.refresh = RefreshRun(pid, report, deadline)
        self.log("debug", f"refresh run started as PID {pid}", event="refresh_started", pid=pid)

    def on_refresh_exit(self, wait_status: int) -> None:
        run = self.refresh
        assert run is not None
        self.refresh = None
        report = Report(_read_all(run.report))
        status = exit_status(wait_status)
        if os.WIFSIGNALED(wait_status):
            # Killed (by us, or by the OOM killer): what it staged is still there.
            remove_stale_entries(self.options.refresh_dir, self.log)
        else:
            self.tidy_at = time.monotonic() + TIDY_DELAY
        swapped = bool(report.changed or report.environ)  # whatever came after the swap
        if self.stopping:
            if swapped:
                self.on_refreshed(report, None)
            else:
                self.log("debug", f"refresh run ended (status {status})", event="refresh_stopped")
            return
        if status == 0:
            self.failures = 0
            delay = self.schedule(report.within)
            self.on_refreshed(report, delay)
            return
        if swapped:
            self.on_refreshed(report, None)
        self.failures += 1
        delay = self.schedule(report.within)
        fields = {"status": status, "failures": self.failures, **_next_fields(delay)}
        if status == EXIT_EXPIRED:
            self.log(
                "error",
                "a credential the command holds has expired and cannot be replaced "
                f"(refresh status {status}); keeping the last files",
                event="credential_expired",
                **fields,
            )
            if self.options.on_change == "exit" and self.child is not None:
                self.log(
                    "info",
                    f"stopping {self.program}: --on-change exit (status {EXIT_EXPIRED})",
                    event="on_change",
                    action="exit",
                )
                self.stop_command(EXIT_EXPIRED)
            return
        self.log(
            "warning",
            f"refresh failed (status {status}); keeping the last good files; retrying in "
            f"{delay:.1f} s ({self.failures} failure{'s' if self.failures != 1 else ''} in a row)",
            event="refresh_failed",
            **fields,
        )

    def on_refreshed(self, report: Report, delay: float | None) -> None:
        """Log a successful run; gather its changes for the next action (``delay``: to the next
        refresh, None when stopping)."""
        names = list(dict.fromkeys([*report.changed, *report.environ]))
        after = f"; next refresh in {delay:.1f} s" if delay is not None else ""
        fields = _next_fields(delay) if delay is not None else {}
        if not names:
            self.log(
                "debug",
                f"refreshed {report.secrets} secrets: nothing changed{after}",
                event="refresh_unchanged",
                secrets=report.secrets,
                **fields,
            )
            return
        self.log(
            "info",
            f"refreshed: {', '.join(names)} changed ({len(names)} of {report.secrets} "
            f"secrets){after}",
            event="refresh_changed",
            changed=names,
            changed_count=len(names),
            secrets=report.secrets,
            **fields,
        )
        if report.environ:
            self.load_environ(report.environ)
        if self.child is None or self.stopping or self.options.on_change == "none":
            return
        self.gathered.update(dict.fromkeys(names))
        if self.action_at is None:
            self.action_at = max(time.monotonic(), self.last_action + DEBOUNCE)

    def load_environ(self, names: list[str]) -> None:
        """Take the command's environment the refresh computed, for the next restart."""
        path = os.path.join(self.options.refresh_dir or "", STATE_DIRECTORY, COMMAND_ENVIRONMENT)
        try:
            with open(path, "rb") as stream:
                raw = stream.read()
            os.unlink(path)
        except OSError as err:
            self.log(
                "warning",
                f"cannot read the refreshed environment: {err.strerror}",
                event="environ_unreadable",
            )
            return
        entries = (entry.partition(b"=") for entry in raw.split(b"\0") if entry)
        self.environ = {os.fsdecode(k): os.fsdecode(v) for k, _, v in entries}
        if self.options.on_change not in ("restart", "exit"):
            self.log(
                "warning",
                f"{', '.join(names)} changed, and the running command keeps the value it "
                "started with: --on-change restart or exit gives it the new one",
                event="exported_value_changed",
                changed=names,
            )

    def schedule(self, within: float | None) -> float:
        """Set the next refresh: the period, or a backoff after failures; sooner if asked."""
        period = self.options.refresh or MIN_REFRESH_DELAY
        if self.failures:
            delay = min(period, BACKOFF_FIRST * 2.0 ** min(self.failures - 1, 30))
            delay *= 0.5 + 0.5 * _fraction()
        else:
            delay = jittered(period)
        if within is not None:
            # A provider's deadline (a lease to renew) comes first, but a failing
            # series still backs off: what failed now would fail again at once.
            delay = min(delay, max(within, BACKOFF_FIRST) if self.failures else within)
        delay = max(MIN_REFRESH_DELAY, delay)
        self.next_refresh = time.monotonic() + delay
        return delay

    def act(self) -> None:
        """Run the --on-change action for everything gathered since the last one."""
        self.action_at = None
        if self.stopping or self.child is None or self.restarting or not self.gathered:
            return  # a restart in progress covers what was gathered when it starts again
        names = list(self.gathered)
        self.gathered.clear()
        self.last_action = time.monotonic()
        action = self.options.on_change
        because = f"{', '.join(names)} changed"
        fields = {"event": "on_change", "action": action, "changed": names}
        if action.startswith("signal:"):
            name = "SIG" + action[7:]
            number = signal_number(name)
            assert number is not None  # parse_on_change accepted only a signal's name
            self.log("info", f"sending {name} to {self.program}: {because}", **fields)
            try:
                os.kill(self.child, number)
            except ProcessLookupError:
                pass  # it exited; its SIGCHLD is pending
        elif action == "restart":
            self.log("info", f"restarting {self.program}: {because}", **fields)
            self.restarting = True
            self.stop_command(None)
        elif action == "exit":
            self.log(
                "info",
                f"stopping {self.program}: {because} (--on-change exit, status {EXIT_CHANGED})",
                **fields,
            )
            self.stop_command(EXIT_CHANGED)


def jittered(period: float) -> float:
    """``period`` shortened by up to :data:`REFRESH_JITTER`, so that a fleet spreads out."""
    return period * (1.0 - REFRESH_JITTER * _fraction())


def _fraction() -> float:
    # os.urandom rather than the random module, which costs start-up time.
    return int.from_bytes(os.urandom(2), "big") / 0xFFFF


def _next_fields(delay: float) -> dict[str, Any]:
    when = time.time() + delay
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when)) + "Z"
    return {"next_refresh": stamp, "next_refresh_in": round(delay, 3)}


def _signal_group(pid: int, number: int, also_pid: bool = False) -> None:
    targets = [(os.killpg, pid)] + ([(os.kill, pid)] if also_pid else [])
    for kill, target in targets:
        try:
            kill(target, number)
        except ProcessLookupError:
            pass  # the group is gone, or the child left it with setsid


def _read_all(fd: int) -> str:
    """What a finished run wrote on its pipe; never blocks (an heir might hold it open)."""
    os.set_blocking(fd, False)
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except BlockingIOError:
        pass
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "replace")


def is_generation(name: str) -> bool:
    """Whether ``name`` is a generation directory of the layout (``..2025_...``)."""
    return name.startswith("..") and name[2:3].isdigit()


def remove_generation(dir_fd: int, name: str) -> None:
    """Remove the generation ``name`` (a flat directory of files) from ``dir_fd``."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    generation = os.open(name, flags, dir_fd=dir_fd)
    try:
        for entry in os.listdir(generation):
            os.unlink(entry, dir_fd=generation)
    finally:
        os.close(generation)
    os.rmdir(name, dir_fd=dir_fd)


def remove_stale(dir_fd: int, keep: str | None = None) -> list[str]:
    """Remove every generation but the one ``..data`` names (and ``keep``), and temporary files.

    Returns the names that could not be removed. Only one process writes a
    secret directory at a time, so nothing removed here is being written.
    """
    try:
        current = os.readlink(DATA_LINK, dir_fd=dir_fd)
    except OSError:
        current = None
    failed = []
    for name in os.listdir(dir_fd):
        try:
            if is_generation(name) and name not in (current, keep):
                remove_generation(dir_fd, name)
            elif name.startswith(TEMPORARY_PREFIX):
                os.unlink(name, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        except OSError:
            failed.append(name)
    return failed


def remove_stale_entries(directory: str | None, log: SupervisorLog) -> None:
    """:func:`remove_stale` on ``directory``, after a refresh run was killed."""
    if directory is None:
        return
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        log("warning", f"cannot tidy {directory}: {err.strerror}", event="cleanup_failed")
        return
    try:
        for name in remove_stale(dir_fd):
            log("warning", f"cannot remove {name} from {directory}", event="cleanup_failed")
    finally:
        os.close(dir_fd)


def remove_files(directory: str, names: list[str], remove_dir: bool, log: SupervisorLog) -> None:
    """Remove the secret files and their layout (``--cleanup``), never following a symlink."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as err:
        log("warning", f"cannot clean up {directory}: {err.strerror}", event="cleanup_failed")
        return
    try:
        for name in [*names, DATA_LINK]:
            try:
                os.unlink(name, dir_fd=dir_fd)
            except FileNotFoundError:
                pass
            except OSError as err:
                log("warning", f"cannot remove {name}: {err.strerror}", event="cleanup_failed")
        for name in [*remove_stale(dir_fd), *_remove_state(dir_fd)]:
            log("warning", f"cannot remove {name} from {directory}", event="cleanup_failed")
    finally:
        os.close(dir_fd)
    if remove_dir:
        try:
            os.rmdir(directory)
        except OSError as err:
            log("warning", f"cannot remove {directory}: {err.strerror}", event="cleanup_failed")
    log("debug", f"removed {len(names)} secret files", event="cleanup", dir=directory)


def _remove_state(dir_fd: int) -> list[str]:
    try:
        remove_generation(dir_fd, STATE_DIRECTORY)  # as flat as a generation
    except FileNotFoundError:
        pass
    except OSError:
        return [STATE_DIRECTORY]
    return []


def main(argv: list[str]) -> NoReturn:
    """Run the steps in the module docstring; exit with the command's status."""
    options = parse_arguments(argv)
    log = SupervisorLog(options.log_format, options.log_level)
    # Normally already blocked by the caller before exec; blocking again is harmless.
    signal.pthread_sigmask(signal.SIG_BLOCK, WAITED_SIGNALS)
    if os.getpid() != 1:
        become_subreaper()
    status = EXIT_SOFTWARE
    try:
        if options.user is not None:
            drop_privileges(*options.user)
        status = Supervisor(options, log).run()
    except CommandFailed as err:
        log("error", str(err), event="command_failed", status=err.status)
        status = err.status
    except OSError as err:
        log(
            "error",
            f"cannot run {options.command[0] if options.command else 'refreshes'}: {err.strerror}",
            event="supervisor_failed",
        )
    finally:
        if options.cleanup_dir is not None:
            remove_files(options.cleanup_dir, options.cleanup_files, options.remove_dir, log)
    sys.exit(status)


if __name__ == "__main__":
    main(sys.argv[1:])
