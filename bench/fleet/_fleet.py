"""One fleet: K processes started at once, when each ended, and what the run cost."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench._common import children_cpu
from bench.fleet._stores import Store

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_of(pid: int) -> float:
    """CPU seconds a live process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, every process of every user."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / TICKS, sum(values) / TICKS


@dataclass
class Outcome:
    """One fleet: when each process ended, how, and what it cost."""

    store: str
    contender: str
    processes: int
    rate: float | None
    finished: list[float]  # seconds from the start of the fleet, one per process
    failed: list[str]  # why each failed process failed (its last stderr line)
    seen: int
    forwarded: int
    throttled: int
    cpu_fleet: float  # the K processes
    cpu_servers: float  # the proxy and the store
    busy_machine: float  # every process on the machine, CPU seconds
    wall: float

    @property
    def last(self) -> float:
        return max(self.finished)


def run_fleet(store: Store, contender: str, processes: int, rate: float | None) -> Outcome:
    """Start ``processes`` of ``contender`` at once and wait for the last one."""
    store.proxy.limit(rate)
    work = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="bench-fleet-"))
    try:
        env = store.environ(contender)
        argvs = [store.argv(contender, work / f"p{i:03d}") for i in range(processes)]
        if contender != "secretinit":  # the loops write into an existing directory
            for i in range(processes):
                (work / f"p{i:03d}").mkdir(mode=0o700)
        logs = [open(work / f"p{i:03d}.log", "w+b") for i in range(processes)]  # noqa: SIM115
        finished = [0.0] * processes
        codes = [0] * processes
        children = children_cpu()
        servers = cpu_of(store.proxy.process.pid) + cpu_of(store.upstream_pid)
        busy = machine_busy()[0]
        started = time.monotonic()
        launched = [
            subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=log)
            for argv, log in zip(argvs, logs, strict=True)
        ]

        def wait(index: int) -> None:
            codes[index] = launched[index].wait()
            finished[index] = time.monotonic() - started

        waiters = [threading.Thread(target=wait, args=(i,)) for i in range(processes)]
        for waiter in waiters:
            waiter.start()
        for waiter in waiters:
            waiter.join()
        wall = time.monotonic() - started
        cpu_fleet = children_cpu() - children
        cpu_servers = cpu_of(store.proxy.process.pid) + cpu_of(store.upstream_pid) - servers
        busy_machine = machine_busy()[0] - busy
        stats = store.proxy.stats()
        failed = []
        for i in range(processes):
            logs[i].seek(0)
            lines = logs[i].read().decode(errors="replace").strip().splitlines()
            logs[i].close()
            written = {p.name: p.read_text() for p in (work / f"p{i:03d}").glob("*") if p.is_file()}
            if codes[i] != 0:
                failed.append(f"exit {codes[i]}: {lines[-1] if lines else ''}"[:300])
            elif written != store.values:
                failed.append("exit 0 but wrong files")
        return Outcome(
            store.name,
            contender,
            processes,
            rate,
            finished,
            failed,
            stats["seen"],
            stats["forwarded"],
            stats["throttled"],
            cpu_fleet,
            cpu_servers,
            busy_machine,
            wall,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
