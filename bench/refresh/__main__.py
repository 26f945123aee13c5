"""Refresh: what stays resident between refreshes, what a refresh costs, how fast a rotation lands.

    uv run python -m bench.refresh                                  # the tables
    uv run python -m bench.refresh --output bench/refresh/RESULTS.md  # and the file
    uv run python -m bench.refresh --quick                          # smoke run

Against an OpenBao dev server started here, with the database engine and
OpenBao's redis plugin against a RESP fake (a renewable lease, as a
database role gives):

1. Memory: RSS and PSS of the process that stays resident between
   refreshes, holding one dynamic database credential (a Vault lease) and a
   KV 2 secret: ``secretinit run --refresh 5m -- sleep`` (its lean
   supervisor), the OpenBao agent (``bao agent``, ``auto_auth`` with a token
   file and a template rendering the same credential and secret, no
   ``exit_after_auth``) and a sleeping ``python -I -S``, interleaved,
   medians.
2. Cost: requests (counted by a proxy in front of the server), CPU time and
   wall time of the start and of a refresh run, for N KV 2 secrets on N
   paths plus the dynamic credential, with a token (``VAULT_TOKEN``) and
   with an AppRole login.
3. Latency: the time from a new KV 2 version to the application's SIGHUP
   under ``run --refresh P --on-change signal:HUP``, the version written at
   a random moment of the period.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from secretinit_vault.testing import DevServer, RespFake, bao_binary, mount_database

from bench._common import children_cpu, markdown_table, memory_of, ratio, seconds
from bench.vault.delay_proxy import DelayProxy

BIN = Path(sys.executable).parent
SLEEP = ["sleep", "3600"]
SECRETINIT = str(BIN / "secretinit")
POLICY = """
path "secret/data/bench/*" { capabilities = ["read"] }
path "database/creds/app"  { capabilities = ["read"] }
"""
# The application of the latency runs: prints the time of each SIGHUP.
SIGNALLED_APP = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGHUP, lambda n, f: print(time.time(), flush=True))\n"
    "signal.signal(signal.SIGTERM, lambda n, f: sys.exit(0))\n"
    "print('ready', flush=True)\n"
    "while True: time.sleep(1)\n"
)


class Store:
    """The server, the proxy that counts requests, a reader token and an AppRole."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.server = DevServer(work / "bao").start()
        self.proxy = DelayProxy(self.server.port, 0.0).start()
        self.address = f"http://127.0.0.1:{self.proxy.port}"
        self.fake = RespFake()
        api = self.server.api
        api("POST", "sys/policies/acl/bench", {"policy": POLICY})
        self.token = api("POST", "auth/token/create", {"policies": ["bench"], "ttl": "4h"})["auth"][
            "client_token"
        ]
        (work / "token").write_text(self.token)
        mount_database(api, self.fake, {"app": "1h/24h"})
        api("POST", "sys/auth/approle", {"type": "approle"})
        api("POST", "auth/approle/role/app", {"token_policies": ["bench"], "token_ttl": "1h"})
        role_id = api("GET", "auth/approle/role/app/role-id")["data"]["role_id"]
        (work / "role_id").write_text(role_id)
        secret_id = api("POST", "auth/approle/role/app/secret-id")["data"]["secret_id"]
        (work / "secret_id").write_text(secret_id)
        (work / "approle.toml").write_text(
            '[providers.vault]\nauth = "approle"\n'
            f'role_id_file = "{work / "role_id"}"\nsecret_id_file = "{work / "secret_id"}"\n'
        )

    def put(self, path: str, value: str) -> None:
        self.server.api("POST", f"secret/data/bench/{path}", {"data": {"value": value}})

    def requests(self) -> int:
        return sum(self.proxy.requests.values())

    def close(self) -> None:
        self.proxy.stop()
        self.fake.close()
        self.server.kill()


def environ(store: Store, n: int, login: str) -> dict[str, str]:
    """N KV secrets and the dynamic credential's two keys (one read, one lease)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    env.update(
        {f"KV_{i}": f"vault://secret/bench/s{i}#value" for i in range(n)},
        DB_USER="vault://database/creds/app#username",
        DB_PASSWORD="vault://database/creds/app#password",
        VAULT_ADDR=store.address,
        HOME=str(store.work),
    )
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as a production image: bytecode compiled
    if login == "token":
        env["VAULT_TOKEN"] = store.token
    else:
        env["SECRETINIT_CONFIG"] = str(store.work / "approle.toml")
    return env


@contextmanager
def running(argv: list[str], env: dict[str, str], ready: Path | None = None) -> Iterator[int]:
    """``argv`` started and settled (``ready`` exists, then a moment); its PID."""
    process = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while ready is not None and not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                _, errors = process.communicate()
                raise SystemExit(f"{argv[0]} did not get ready:\n{errors}")
            time.sleep(0.05)
        time.sleep(1.5)  # the exec into the supervisor, the application's start
        yield process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)
        if process.stderr is not None:
            process.stderr.close()


def agent_config(store: Store, out: Path) -> str:
    templates = {
        "DB_USER": '{{ with secret "database/creds/app" }}{{ .Data.username }}{{ end }}',
        "DB_PASSWORD": '{{ with secret "database/creds/app" }}{{ .Data.password }}{{ end }}',
        "KV_0": '{{ with secret "secret/data/bench/s0" }}{{ .Data.data.value }}{{ end }}',
    }
    blocks = [
        f'vault {{\n  address = "{store.address}"\n}}',
        'auto_auth {\n  method "token_file" {\n'
        f'    config = {{ token_file_path = "{store.work / "token"}" }}\n  }}\n}}',
    ]
    for name, contents in templates.items():
        blocks.append(
            f"template {{\n  contents = {json.dumps(contents)}\n"
            f'  destination = "{out / name}"\n  perms = "0400"\n}}'
        )
    return "\n".join(blocks) + "\n"


def memory(store: Store, samples: int) -> tuple[str, dict[str, float]]:
    work = store.work
    env = environ(store, 1, "token")
    store.put("s0", "bench-memory-value")
    secretinit_dir = work / "memory-secretinit"
    agent_out = work / "memory-agent"
    agent_out.mkdir()
    (work / "agent.hcl").write_text(agent_config(store, agent_out))
    cases = [
        (
            "secretinit run --refresh 5m (lean supervisor)",
            [SECRETINIT, "run", "--dir", str(secretinit_dir), "--refresh", "5m", "--", *SLEEP],
            secretinit_dir / "..secretinit" / "health",
        ),
        (
            "OpenBao agent (auto_auth + template)",
            [bao_binary(), "agent", f"-config={work / 'agent.hcl'}"],
            agent_out / "KV_0",
        ),
        (
            "python -I -S sleeping",
            [sys.executable, "-I", "-S", "-c", "import time; time.sleep(3600)"],
            None,
        ),
    ]
    found: dict[str, list[tuple[int, int]]] = {name: [] for name, _, _ in cases}
    for _ in range(samples):
        for name, argv, ready in cases:
            if ready is not None and ready.exists():
                ready.unlink()
            with running(argv, env, ready) as pid:
                found[name].append(memory_of(pid))
    medians = {
        name: (statistics.median(r for r, _ in got), statistics.median(p for _, p in got))
        for name, got in found.items()
    }
    python_rss = medians["python -I -S sleeping"][0]
    agent_rss = medians["OpenBao agent (auto_auth + template)"][0]
    rows = [
        [
            name,
            f"{rss / 1024:.1f} MiB",
            f"{pss / 1024:.1f} MiB",
            ratio(rss, python_rss),
            ratio(agent_rss, rss),
        ]
        for name, (rss, pss) in medians.items()
    ]
    table = markdown_table(
        ["resident between refreshes", "RSS", "PSS", "RSS vs python -I -S", "agent RSS / this"],
        rows,
    )
    ours = medians["secretinit run --refresh 5m (lean supervisor)"][0]
    return table, {"vs_python": ours / python_rss, "agent_vs": agent_rss / ours}


def refresh_cost(store: Store, n: int, login: str, runs: int) -> list[object]:
    """[N, login, start requests, refresh requests, start CPU, refresh CPU, refresh wall]."""
    directory = store.work / f"cost-{login}-{n}"
    env = environ(store, n, login)
    for i in range(n):
        store.put(f"s{i}", f"bench-value-{i}-{random.random()}")
    # The start: a sidecar, whose process (the same PID becomes its supervisor) is
    # measured once its state is written, and stopped before it refreshes.
    before = store.requests()
    sidecar = subprocess.Popen(
        [SECRETINIT, "fetch", "--dir", str(directory), "--refresh", "1h"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for(directory / "..secretinit" / "health")
    time.sleep(0.5)  # the exec into the supervisor
    start_cpu = _cpu_of(sidecar.pid)
    start_requests = store.requests() - before
    sidecar.send_signal(signal.SIGTERM)
    sidecar.wait(30)
    counts, cpus, walls = [], [], []
    for _ in range(runs):
        before, cpu, wall = store.requests(), children_cpu(), time.perf_counter()
        read_end, write_end = os.pipe()
        run = subprocess.run(
            [SECRETINIT, "refresh-run", "--dir", str(directory), "--report-fd", str(write_end)],
            env=env,
            pass_fds=(write_end,),
            capture_output=True,
            text=True,
            check=False,
        )
        os.close(write_end)
        report = os.read(read_end, 65536).decode()
        os.close(read_end)
        walls.append(time.perf_counter() - wall)
        cpus.append(children_cpu() - cpu)
        counts.append(store.requests() - before)
        if run.returncode != 0 or "changed" in report:
            raise SystemExit(f"a refresh failed or changed something: {report!r} {run.stderr}")
    shutil.rmtree(directory, ignore_errors=True)
    return [
        n,
        login,
        start_requests,
        int(statistics.median(counts)),
        seconds(start_cpu),
        seconds(statistics.median(cpus)),
        seconds(statistics.median(walls)),
    ]


def _cpu_of(pid: int) -> float:
    """User and system CPU seconds ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{path} did not appear")
        time.sleep(0.05)


def latency(store: Store, period: float, rotations: int) -> tuple[str, float]:
    """Seconds from a new KV 2 version to the application's SIGHUP, each rotation."""
    env = environ(store, 1, "token")
    directory = store.work / "latency"
    store.put("s0", "latency-0")
    argv = [SECRETINIT, "run", "--dir", str(directory), "--refresh", f"{period}s"]
    argv += ["--on-change", "signal:HUP", "--", sys.executable, "-c", SIGNALLED_APP]
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    delays = []
    try:
        assert process.stdout is not None
        if process.stdout.readline().strip() != b"ready":
            raise SystemExit("the application did not start")
        for rotation in range(1, rotations + 1):
            time.sleep(random.uniform(0, period) + 5.5)  # past the debounce window of 5 s
            written = time.time()
            store.put("s0", f"latency-{rotation}")
            ready, _, _ = select.select([process.stdout], [], [], period + 30)
            if not ready:
                raise SystemExit("the application got no SIGHUP")
            delays.append(float(process.stdout.readline()) - written)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        if process.stdout is not None:
            process.stdout.close()
    rows = [
        [
            f"{period:g} s",
            rotations,
            seconds(statistics.median(delays)),
            seconds(max(delays)),
            seconds(period + 1),
        ]
    ]
    table = markdown_table(
        ["period", "rotations", "median to SIGHUP", "slowest", "goal: period + 1 s"], rows
    )
    return table, max(delays)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.refresh", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer samples and sizes")
    parser.add_argument("--output", type=Path, help="also write the tables to this file")
    args = parser.parse_args()
    samples, runs, sizes, rotations = (1, 1, [1], 2) if args.quick else (5, 5, [1, 10, 100], 5)
    shm = Path("/dev/shm") if os.path.isdir("/dev/shm") else None
    work = Path(tempfile.mkdtemp(prefix="secretinit-bench-refresh-", dir=shm))
    store = Store(work)
    sections = []
    try:
        load = os.getloadavg()
        table, memory_ratios = memory(store, samples)
        sections.append(f"## Resident between refreshes (median of {samples})\n\n{table}")
        rows = [
            refresh_cost(store, n, login, runs) for n in sizes for login in ("token", "approle")
        ]
        headers = [
            "N KV + 1 lease",
            "login",
            "start: requests",
            "refresh: requests",
            "start: CPU",
            "refresh: CPU",
            "refresh: wall",
        ]
        sections.append(
            f"## The start and a refresh (refresh: median of {runs})\n\n"
            + markdown_table(headers, rows)
        )
        table, slowest = latency(store, 5.0, rotations)
        sections.append(f"## From a rotation to the application's signal\n\n{table}")
        load_after = os.getloadavg()
    finally:
        store.close()
        shutil.rmtree(work, ignore_errors=True)
    goals = (
        f"Goals: resident {memory_ratios['vs_python']:.2f}x a sleeping python -I -S "
        "(goal <= 1.3x), "
        f"the agent {memory_ratios['agent_vs']:.1f}x more (goal >= 8x); slowest rotation "
        f"{slowest:.2f} s (goal <= period + 1 s = 6 s)."
    )
    machine = (
        f"Load average {load[0]:.2f} at the start, {load_after[0]:.2f} at the end; "
        f"{os.cpu_count()} CPUs."
    )
    text = "\n\n".join([*sections, goals, machine]) + "\n"
    print(text)
    if args.output is not None:
        header = (
            "# Refresh benchmark\n\n"
            "    uv run python -m bench.refresh --output bench/refresh/RESULTS.md\n\n"
            "What is measured, and how: the docstring of bench/refresh/__main__.py. "
            f"OpenBao {_bao_version()}; bytecode compiled, as in a production image.\n\n"
        )
        args.output.write_text(header + text)


def _bao_version() -> str:
    output = subprocess.run(
        [bao_binary(), "version"], capture_output=True, text=True, check=False
    ).stdout
    return output.split()[1] if output.startswith("OpenBao") else "(version unknown)"


if __name__ == "__main__":
    main()
