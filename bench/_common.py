"""Timing helpers shared by the benchmarks: run side by side, report medians and ratios.

Every benchmark runs its contenders interleaved in one process (A, B, C, A,
B, C, ...) so that a change in machine load hits all of them alike, then
prints a Markdown table that goes into the README as it is.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Contender:
    """One way of doing the job: a name and a function that does it once."""

    name: str
    once: Callable[[], object]
    before: Callable[[], object] | None = None  # untimed set-up before each run
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def time_command(argv: Sequence[str], env: Mapping[str, str] | None = None) -> Callable[[], object]:
    """A function that runs ``argv`` to completion and fails on a non-zero exit."""
    full_env = dict(os.environ) if env is None else dict(env)

    def once() -> object:
        subprocess.run(
            argv, env=full_env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        return None

    return once


def race(contenders: Sequence[Contender], runs: int, warmup: int = 1) -> None:
    """Time every contender ``runs`` times, interleaved, after ``warmup`` untimed rounds."""
    for round_number in range(warmup + runs):
        for contender in contenders:
            if contender.before is not None:
                contender.before()
            started = time.perf_counter()
            contender.once()
            elapsed = time.perf_counter() - started
            if round_number >= warmup:
                contender.seconds.append(elapsed)


def emptier(directory: Path) -> Callable[[], None]:
    """A ``before`` that empties ``directory`` of a secretinit run's files, keeping it."""

    def empty() -> None:
        for entry in directory.iterdir():
            if entry.is_dir() and not entry.is_symlink():  # a generation directory
                shutil.rmtree(entry)
            else:
                entry.unlink()

    return empty


def children_cpu() -> float:
    """CPU seconds (user + system) of every waited-for child process so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def memory_of(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of process ``pid`` in KiB, from /proc."""
    rss = pss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            pss = int(line.split()[1])
    return rss, pss


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table, right-aligned numbers."""
    text_rows = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in text_rows)) for i, h in enumerate(headers)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in text_rows:
        lines.append("| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |")
    return "\n".join(lines)


def seconds(value: float) -> str:
    """``0.123 s`` or ``12.3 ms``: a duration for a table cell."""
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def ratio(value: float, reference: float) -> str:
    """``value`` as a multiple of ``reference``, e.g. ``2.41x``."""
    return f"{value / reference:.2f}x"
