"""K ``secretinit fetch`` processes at once against a store behind a rate limit of R requests/s.

    uv run python -m bench.fleet            # 3 rounds, ~10 min
    uv run python -m bench.fleet --quick    # 1 round
    uv run python -m bench.fleet --write    # also rewrite the figures in bench/fleet/RESULTS.md

Each round, for each store (OpenBao, moto's Secrets Manager), each behind its
rate-limiting proxy (``bench/fleet/_proxy.py``, a process of its own):

1. the fleet with no limit: how fast this machine's two cores start K
   processes and serve them (the time the rate limit must dwarf);
2. the fleet at R requests a second: time until the last process has its
   files, against the ideal drain time (the requests one fleet needs / R);
   requests the proxy saw, against that minimum; processes that failed;
3. the same fleet of a hand-written entrypoint (a plain hvac or boto3 loop,
   the SDK's default retries): what a user would otherwise run.

The requests one process needs are counted by the proxy on a lone, unlimited
run, not assumed.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench._common import markdown_table, seconds
from bench.fleet._fleet import Outcome, run_fleet
from bench.fleet._stores import TIMEOUT, Store, stores

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
BEGIN, END = "<!-- figures: written by python -m bench.fleet --write -->", "<!-- /figures -->"

#: Processes per fleet, and the rate limits. Chosen so that the ideal drain
#: (K x requests per process / R) is several times what the same fleet takes
#: with no limit at all, which this machine's two cores decide (measured in
#: each round and printed beside it).
PROCESSES = 40
RATES = {"vault": 4.0, "aws": 1.0}


def calibrate(store: Store) -> None:
    """A lone process of each contender, unlimited: bytecode caches, and requests per process."""
    for contender in ("secretinit", "baseline"):
        for _ in range(2):  # the first writes the bytecode caches
            outcome = run_fleet(store, contender, 1, None)
        if outcome.failed:
            raise SystemExit(f"{store.name} {contender} fails alone: {outcome.failed[0]}")
        store.per_process[contender] = outcome.seen


@dataclass
class Report:
    """Every fleet of every round, by (store, contender, limited), and what each store needs."""

    processes: int
    rates: Mapping[str, float]
    stores: dict[str, tuple[str, str, dict[str, int]]]  # name -> title, baseline, requests
    fleets: dict[tuple[str, str, bool], list[Outcome]] = field(default_factory=dict)


def rounds(processes: int, runs: int, rates: Mapping[str, float]) -> Report:
    """``runs`` rounds of every fleet, interleaved: a change of load hits them alike."""
    with (
        tempfile.TemporaryDirectory(dir="/dev/shm", prefix="bench-fleet-") as work,
        stores(work) as all_stores,
    ):
        for store in all_stores:
            calibrate(store)
            print(f"{store.name}: requests per process: {store.per_process}", file=sys.stderr)
        report = Report(
            processes,
            rates,
            {s.name: (s.title, s.baseline_name, dict(s.per_process)) for s in all_stores},
        )
        for round_number in range(runs):
            for store in all_stores:
                rate = rates[store.name]
                for contender, limit in (
                    ("secretinit", None),
                    ("secretinit", rate),
                    ("baseline", rate),
                ):
                    outcome = run_fleet(store, contender, processes, limit)
                    report.fleets.setdefault((store.name, contender, limit is not None), []).append(
                        outcome
                    )
                    print(
                        f"round {round_number + 1}: {store.name} {contender} "
                        f"{'at ' + str(limit) + '/s' if limit else 'unlimited'}: last "
                        f"{outcome.last:.1f} s, {outcome.seen} requests, {len(outcome.failed)} "
                        f"failed{': ' + outcome.failed[0] if outcome.failed else ''}; "
                        f"load {os.getloadavg()[0]:.2f}",
                        file=sys.stderr,
                    )
    return report


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def tables(report: Report) -> str:
    """The two Markdown tables: the fleet with no limit, and at R requests a second."""
    cores = os.cpu_count() or 1
    processes = report.processes
    free_rows = []
    limited_rows = []
    for store, (title, baseline, per_process) in report.stores.items():
        rate = report.rates[store]
        free = report.fleets[(store, "secretinit", False)]
        cpu = median([o.cpu_fleet + o.cpu_servers for o in free])
        wall = median([o.last for o in free])
        ideal = per_process["secretinit"] * processes / rate
        free_rows.append(
            [
                title,
                processes,
                seconds(wall),
                f"{cpu:.1f} s",
                seconds(median([o.cpu_fleet / o.processes for o in free])),
                seconds(ideal),
                f"{ideal / wall:.1f}x",
            ]
        )
        for contender, label in (("secretinit", "secretinit fetch"), ("baseline", baseline)):
            runs = report.fleets[(store, contender, True)]
            need = per_process[contender]
            minimal = need * processes
            ideal = minimal / rate
            last = median([o.last for o in runs])
            seen = median([o.seen for o in runs])
            failures = [len(o.failed) for o in runs]
            busy = median([o.busy_machine / (cores * o.wall) for o in runs])
            own = median([(o.cpu_fleet + o.cpu_servers) / (cores * o.wall) for o in runs])
            ok = [o.last for o in runs if not o.failed]
            limited_rows.append(
                [
                    title,
                    label,
                    f"{processes} x {need}",
                    f"{rate:g}/s",
                    seconds(ideal),
                    seconds(last)
                    + (f" (max {seconds(max(o.last for o in runs))})" if len(runs) > 1 else ""),
                    f"{last / ideal:.2f}x",
                    f"{seen:.0f}",
                    f"{seen / minimal:.2f}x",
                    "/".join(str(f) for f in failures),
                    f"{own:.0%} / {busy:.0%}",
                    "yes" if ok and len(ok) == len(runs) and max(ok) <= TIMEOUT else "no",
                ]
            )
    free_table = markdown_table(
        [
            "store",
            "K",
            "last done, no limit",
            "CPU: fleet + proxy + store",
            "CPU a process",
            "ideal drain at R",
            "ideal drain / no limit",
        ],
        free_rows,
    )
    limited_table = markdown_table(
        [
            "store",
            "entrypoint",
            "K x requests",
            "R",
            "ideal drain",
            "last done",
            "/ ideal",
            "proxy saw",
            "/ minimum",
            "failed (per round)",
            "CPU: fleet / machine",
            "all within --timeout",
        ],
        limited_rows,
    )
    return (
        "With no rate limit (the cores' share of the time):\n\n"
        + free_table
        + "\n\nAt R requests a second (medians of the rounds):\n\n"
        + limited_table
    )


def header(runs: int) -> str:
    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}" for name in ("hvac", "botocore", "moto")
    )
    bao = subprocess.run(
        [_bao(), "version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return (
        f"`uv run python -m bench.fleet` on {datetime.date.today()}: {runs} round(s).\n"
        f"Python {platform.python_version()}, {versions}, {bao}; {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f} at the end."
    )


def _bao() -> str:
    from secretinit_vault.testing import bao_binary

    return bao_binary()


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fleet", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="one round")
    parser.add_argument("--runs", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--processes", type=int, default=PROCESSES, help="K, processes a fleet")
    parser.add_argument("--write", action="store_true", help="rewrite bench/fleet/RESULTS.md")
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    report = rounds(args.processes, runs, RATES)
    text = header(runs) + "\n\n" + tables(report)
    print(text)
    if args.write:
        document = RESULTS.read_text()
        start, end = document.index(BEGIN) + len(BEGIN), document.index(END)
        RESULTS.write_text(document[:start] + "\n" + text + "\n" + document[end:])


if __name__ == "__main__":
    main()
