"""The resident supervisor: runs the application, forwards signals, reaps orphans.

Once the secret files are written, ``secretinit run`` replaces itself (same
PID, so still PID 1 in a container) with ``python -I -S -B`` running this
file as a script. It imports only the standard library: a resident process
holding click, a cloud SDK and its HTTP stack would cost tens of MB for the
whole life of the application and gain nothing.

It reads as its steps, as tini and dumb-init do:

1. the caller has already blocked the forwarded signals and SIGCHLD, so a
   ``docker stop`` that lands during start-up waits in the pending set
   instead of being lost (a PID 1 ignores an unhandled SIGTERM);
2. become a child subreaper when not PID 1, so orphans are reaped here too;
3. drop root for good (``--user``) before anything of the application runs;
4. spawn the command in its own process group with the caller's signal mask
   and Python's own changed dispositions (SIGPIPE, SIGXFSZ) restored;
5. loop: wait for a signal; forward it, or reap every exited child;
   after a forwarded SIGTERM or SIGINT, if ``--grace`` was given, give the
   child that long, then SIGKILL its process group (without it, as tini, the
   orchestrator's stop period is the only deadline);
6. remove the secret files (``--cleanup``) and exit with the child's status:
   its exit code, 128+N for death by signal N, 127 if the command was not
   found, 126 if it could not be executed.

The main process builds this script's arguments with :func:`supervisor_argv`.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any, NoReturn

FORWARDED_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)
# After one of these reaches the child, it has --grace seconds to exit.
STOPPING_SIGNALS = (signal.SIGTERM, signal.SIGINT)
WAITED_SIGNALS = frozenset((*FORWARDED_SIGNALS, signal.SIGCHLD))

EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127
EXIT_SOFTWARE = 70
_PR_SET_CHILD_SUBREAPER = 36
LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


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
        self.command = command
        self.grace: float | None = None  # no deadline of its own: the orchestrator's
        self.log_format = "text"
        self.log_level = "info"
        self.user: tuple[int, int, tuple[int, ...]] | None = None
        self.child_sigmask: tuple[int, ...] = ()
        self.cleanup_dir: str | None = None
        self.cleanup_files: list[str] = []
        self.remove_dir = False


def program_argv(*args: str) -> list[str]:
    """The command line that runs secretinit's own CLI with ``args`` (a refresh run, ...).

    With :func:`supervisor_argv`, the only place that knows how secretinit
    executes itself: a self-contained bundle (``sys.frozen``) is its own
    executable; the Python form runs the package with the same interpreter.
    """
    if getattr(sys, "frozen", False):
        return [sys.executable, *args]
    return [sys.executable, "-I", "-m", "secretinit", *args]


def supervisor_argv(options: SupervisorOptions) -> list[str]:
    """The ``python -I -S -B _supervisor.py ...`` command line for ``options``."""
    argv = [sys.executable, "-I", "-S", "-B", os.path.abspath(__file__)]
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
        else:
            raise ValueError(f"unknown supervisor option {flag}")
    if not options.command:
        raise ValueError("no command to supervise")
    return options


def become_subreaper() -> None:
    """Adopt orphaned descendants, as PID 1 does, so none stays a zombie."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


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


def spawn(command: list[str], child_sigmask: tuple[int, ...]) -> int:
    """Start ``command`` in its own process group; return its PID.

    fork + exec rather than posix_spawn, because the child must take the
    terminal's foreground (``docker run -it``) before it runs, as tini does.
    Whether exec worked comes back through a close-on-exec pipe.
    """
    take_terminal = _owns_terminal()
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # the child: nothing here may return
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
            os.execvp(command[0], command)
        except OSError as err:
            os.write(write_end, str(err.errno).encode())
        finally:
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


def command_failed(program: str, error: int) -> CommandFailed:
    """The shell's verdict on an exec that failed with ``error`` (an errno)."""
    if error in (2, 20):  # ENOENT, ENOTDIR
        return CommandFailed(EXIT_NOT_FOUND, f"{program}: command not found")
    return CommandFailed(EXIT_CANNOT_EXECUTE, f"{program}: cannot execute: {os.strerror(error)}")


def _owns_terminal() -> bool:
    try:
        return os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


def exit_status(wait_status: int) -> int:
    """The shell's exit status for a wait status: the code, or 128+N for signal N."""
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


def reap(child: int) -> int | None:
    """Reap every exited child; return the main child's wait status if it was one."""
    status = None
    while True:
        try:
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return status
        if pid == 0:
            return status
        if pid == child:
            status = wait_status


def supervise(child: int, grace: float | None, log: SupervisorLog) -> int:
    """Forward signals to ``child`` and reap until it exits; return its wait status."""
    kill_at: float | None = None
    info: signal.struct_siginfo | None
    while True:
        if kill_at is None:
            info = signal.sigwaitinfo(WAITED_SIGNALS)
        else:
            remaining = kill_at - time.monotonic()
            info = signal.sigtimedwait(WAITED_SIGNALS, remaining) if remaining > 0 else None
            if info is None:
                log(
                    "warning",
                    f"the command did not exit {grace:g} s after being asked; killing it",
                    event="grace_expired",
                    pid=child,
                )
                _kill_group(child)
                kill_at = None
                continue
        number = info.si_signo
        if number == signal.SIGCHLD:
            status = reap(child)
            if status is not None:
                return status
            continue
        name = signal.Signals(number).name
        level = "info" if number in STOPPING_SIGNALS else "debug"
        log(level, f"forwarding {name} to the command", event="signal_forwarded", signal=name)
        try:
            os.kill(child, number)
        except ProcessLookupError:
            pass  # it exited; its SIGCHLD is pending
        if number in STOPPING_SIGNALS and kill_at is None and grace is not None:
            kill_at = time.monotonic() + grace


def _kill_group(child: int) -> None:
    for kill, target in ((os.killpg, child), (os.kill, child)):
        try:
            kill(target, signal.SIGKILL)
        except ProcessLookupError:
            pass  # the group is gone, or the child left it with setsid


def remove_files(directory: str, names: list[str], remove_dir: bool, log: SupervisorLog) -> None:
    """Remove the secret files (``--cleanup``), never following a symlink out."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as err:
        log("warning", f"cannot clean up {directory}: {err.strerror}", event="cleanup_failed")
        return
    try:
        for name in names:
            try:
                os.unlink(name, dir_fd=dir_fd)
            except FileNotFoundError:
                pass
            except OSError as err:
                log("warning", f"cannot remove {name}: {err.strerror}", event="cleanup_failed")
    finally:
        os.close(dir_fd)
    if remove_dir:
        try:
            os.rmdir(directory)
        except OSError as err:
            log("warning", f"cannot remove {directory}: {err.strerror}", event="cleanup_failed")
    log("debug", f"removed {len(names)} secret files", event="cleanup", dir=directory)


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
        child = spawn(options.command, options.child_sigmask)
        log(
            "debug",
            f"started {options.command[0]} as PID {child}",
            event="child_started",
            pid=child,
        )
        wait_status = supervise(child, options.grace, log)
        status = exit_status(wait_status)
        how = (
            f"was killed by {signal.Signals(os.WTERMSIG(wait_status)).name}"
            if os.WIFSIGNALED(wait_status)
            else "exited"
        )
        log(
            "info",
            f"{options.command[0]} {how} (status {status})",
            event="child_exited",
            status=status,
        )
    except CommandFailed as err:
        log("error", str(err), event="command_failed", status=err.status)
        status = err.status
    except OSError as err:
        log("error", f"cannot run {options.command[0]}: {err.strerror}", event="supervisor_failed")
    finally:
        if options.cleanup_dir is not None:
            remove_files(options.cleanup_dir, options.cleanup_files, options.remove_dir, log)
    sys.exit(status)


if __name__ == "__main__":
    main(sys.argv[1:])
