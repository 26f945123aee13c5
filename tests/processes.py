"""Driving a real, long-running ``secretinit`` in the tests: lines, signals, PIDs."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from conftest import secretinit_executable

TESTS = Path(__file__).resolve().parent
SIGNAL_CHILD = str(TESTS / "programs" / "signal_child.py")
LINE_TIMEOUT = 20.0
# Runs the rest of the command line as PID 1 of a new PID namespace.
PID_NAMESPACE = ("unshare", "--pid", "--fork", "--mount-proc", "--kill-child")


class Running:
    """A ``secretinit`` subprocess whose stdout is read line by line with timeouts."""

    def __init__(
        self,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        pid_namespace: bool = False,
        **kwargs: object,
    ) -> None:
        full_env = dict(os.environ)
        full_env.update(env or {})
        argv = [secretinit_executable(), *args]
        if pid_namespace:
            argv = [*PID_NAMESPACE, *argv]
        self.pid_namespace = pid_namespace
        kwargs.setdefault("stderr", subprocess.PIPE)  # or a file, for a long-running log
        self.process = subprocess.Popen(  # type: ignore[call-overload]
            argv,
            env=full_env,
            stdout=subprocess.PIPE,
            **kwargs,
        )
        self._buffer = b""
        self.lines: list[str] = []

    @property
    def pid(self) -> int:
        """The PID of secretinit itself (inside a namespace: unshare's child)."""
        if not self.pid_namespace:
            return int(self.process.pid)
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        deadline = time.monotonic() + LINE_TIMEOUT
        while time.monotonic() < deadline:
            found = children.read_text().split()
            if found:
                return int(found[0])
            time.sleep(0.01)
        raise TimeoutError("unshare started no child")

    def expect(self, prefix: str, timeout: float = LINE_TIMEOUT) -> str:
        """Wait for the next stdout line starting with ``prefix``; return it."""
        deadline = time.monotonic() + timeout
        assert self.process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        try:
            while True:
                while b"\n" in self._buffer:
                    raw, self._buffer = self._buffer.split(b"\n", 1)
                    line = raw.decode()
                    self.lines.append(line)
                    if line.startswith(prefix):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    raise TimeoutError(f"no line starting with {prefix!r}; got {self.lines!r}")
                chunk = os.read(self.process.stdout.fileno(), 65536)
                if not chunk:
                    raise EOFError(f"stdout closed before {prefix!r}; got {self.lines!r}")
                self._buffer += chunk
        finally:
            selector.close()

    def send(self, number: int) -> None:
        os.kill(self.pid, number)

    def wait(self, timeout: float = LINE_TIMEOUT) -> tuple[int, str, str]:
        """Wait for the exit; return (status, rest of stdout, stderr)."""
        out, err = self.process.communicate(timeout=timeout)
        rest = (self._buffer + out).decode()
        return self.process.returncode, rest, err.decode() if err is not None else ""

    def kill(self) -> None:
        """Kill secretinit and every process under it (the command holds stdout open)."""
        if self.process.poll() is None:
            for pid in [*descendants(self.process.pid), self.process.pid]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.process.communicate(timeout=LINE_TIMEOUT)


def descendants(pid: int) -> list[int]:
    """Every process under ``pid``, deepest first."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    found: list[int] = []
    for child in map(int, children):
        found += [*descendants(child), child]
    return found


def zombies_of(pid: int) -> list[int]:
    """The children of ``pid`` that are zombies (state Z)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z" and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def uids_of(pid: int) -> tuple[int, int]:
    """Real and effective uid of ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            real, effective = line.split()[1:3]
            return int(real), int(effective)
    raise LookupError(pid)


__all__ = ["PID_NAMESPACE", "SIGNAL_CHILD", "Running", "signal", "uids_of", "zombies_of"]
