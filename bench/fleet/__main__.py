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
import json
import os
import platform
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._common import markdown_table, seconds

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RESULTS = HERE / "RESULTS.md"
BEGIN, END = "<!-- figures: written by python -m bench.fleet --write -->", "<!-- /figures -->"
TICKS = os.sysconf("SC_CLK_TCK")
SECRETINIT = str(Path(sys.executable).with_name("secretinit"))

#: Processes per fleet, and the rate limits. Chosen so that the ideal drain
#: (K x requests per process / R) is several times what the same fleet takes
#: with no limit at all, which this machine's two cores decide (measured in
#: each round and printed beside it).
PROCESSES = 40
RATES = {"vault": 4.0, "aws": 1.0}
TIMEOUT = 120  # --timeout of every process: far above the ideal drain
NAMES = ("S0000", "S0001")  # two secrets a process


@dataclass
class Proxy:
    """The rate-limiting proxy in front of one store."""

    process: subprocess.Popen[str]
    url: str

    def limit(self, rate: float | None) -> None:
        body = json.dumps({"rate": rate, "burst": max(1.0, rate or 1.0)}).encode()
        request = urllib.request.Request(  # noqa: S310 - our own loopback proxy
            f"{self.url}/_fleet/limit", body, method="POST"
        )
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - our own loopback proxy
            pass

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/_fleet/stats", timeout=10) as answer:  # noqa: S310
            stats: dict[str, Any] = json.loads(answer.read())
            return stats


@contextmanager
def child(argv: Sequence[str], env: Mapping[str, str] | None = None) -> Iterator[tuple[Any, str]]:
    """A helper process that prints its port first and serves until its stdin closes."""
    process = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env
    )
    try:
        assert process.stdout is not None
        yield process, f"http://127.0.0.1:{int(process.stdout.readline())}"
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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
class Store:
    """One store: its upstream server, its proxy, and how a process of each contender reads it."""

    name: str
    title: str
    proxy: Proxy
    upstream_pid: int
    env: dict[str, str]
    values: dict[str, str]
    baseline_name: str
    per_process: dict[str, int] = field(default_factory=dict)  # contender -> requests

    def argv(self, contender: str, directory: Path) -> list[str]:
        if contender == "secretinit":
            return [SECRETINIT, "fetch", "--dir", str(directory), "--timeout", str(TIMEOUT)]
        if self.name == "vault":
            spec = directory.with_suffix(".json")
            spec.write_text(
                json.dumps(
                    {
                        "dir": str(directory),
                        "secrets": [[n, f"secret/fleet/{n.lower()}", "value"] for n in NAMES],
                    }
                )
            )
            return [sys.executable, str(ROOT / "bench" / "vault" / "hvac_loop.py"), str(spec)]
        loop = ROOT / "bench" / "aws" / "_boto3_loop.py"
        return [sys.executable, str(loop), str(directory), "fleet/s", str(len(NAMES))]

    def environ(self, contender: str) -> dict[str, str]:
        env = dict(self.env)
        if contender == "secretinit":
            for name in NAMES:
                env[name] = (
                    f"vault://secret/fleet/{name.lower()}#value"
                    if self.name == "vault"
                    else f"aws-sm://fleet/s{name[1:]}"
                )
        return env


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
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
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
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_fleet = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
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


def base_environment(home: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "VAULT_", "BAO_", "SECRETINIT_"))
    }
    # Production images carry bytecode; without it every start compiles the
    # SDK again. A lone run per contender writes the caches before any fleet.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(HOME=home, SECRETINIT_LOG_LEVEL="warning")
    return env


@contextmanager
def stores(work: str) -> Iterator[list[Store]]:
    """OpenBao and moto, each planted with the fleet's secrets, each behind its proxy."""
    sys.path.insert(0, str(ROOT / "providers" / "vault"))
    from secretinit_vault.testing import DevServer

    base = base_environment(work)
    values = {name: secrets.token_urlsafe(18) for name in NAMES}
    with ExitStack() as stack:
        bao = stack.enter_context(DevServer(Path(work, "bao")))
        for name, value in values.items():
            for _attempt in range(100):  # secret/ is upgraded to KV 2 just after the start
                try:
                    bao.api("POST", f"secret/data/fleet/{name.lower()}", {"data": {"value": value}})
                    break
                except RuntimeError as err:
                    if "Upgrading" not in str(err):
                        raise
                    time.sleep(0.1)
        vault_proxy, vault_url = stack.enter_context(
            child([sys.executable, "-m", "bench.fleet._proxy", "vault", bao.address])
        )
        vault_env = dict(base, VAULT_ADDR=vault_url, VAULT_TOKEN=bao.root_token)

        moto, moto_url = stack.enter_context(child([sys.executable, "-m", "bench.aws._server"]))
        aws_proxy, aws_url = stack.enter_context(
            child([sys.executable, "-m", "bench.fleet._proxy", "aws", moto_url])
        )
        aws_env = dict(
            base,
            AWS_ACCESS_KEY_ID="AKIDFLEETEXAMPLE",
            AWS_SECRET_ACCESS_KEY="fleet-secret-key",
            AWS_REGION="us-east-1",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_ENDPOINT_URL=aws_url,
            AWS_CONFIG_FILE=os.path.join(work, "none"),
            AWS_SHARED_CREDENTIALS_FILE=os.path.join(work, "none"),
            AWS_EC2_METADATA_DISABLED="true",
        )
        import boto3

        client = boto3.client(
            "secretsmanager",
            endpoint_url=moto_url,
            region_name="us-east-1",
            aws_access_key_id="AKIDFLEETEXAMPLE",
            aws_secret_access_key="fleet-secret-key",
        )
        for name, value in values.items():
            client.create_secret(Name=f"fleet/s{name[1:]}", SecretString=value)
        client.close()
        yield [
            Store(
                "vault",
                "OpenBao",
                Proxy(vault_proxy, vault_url),
                bao.process.pid,  # type: ignore[union-attr]
                vault_env,
                values,
                "hvac loop",
            ),
            Store(
                "aws",
                "Secrets Manager (moto)",
                Proxy(aws_proxy, aws_url),
                moto.pid,
                aws_env,
                values,
                "boto3 loop",
            ),
        ]


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
