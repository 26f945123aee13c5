"""Vault: ``secretinit fetch`` against the OpenBao agent and a plain sequential hvac loop.

    uv run python -m bench.vault            # N = 1, 10, 100, 1000; 5 timed runs each
    uv run python -m bench.vault --quick    # smoke run: N = 1, 10; 1 timed run

Each contender does the same job: read N secrets (one key on each of N paths,
or N keys of one path) from an OpenBao dev server and write each to its own
file with mode 0400 on tmpfs. They run interleaved, on loopback and through a
delay proxy adding 2 ms to every request's round trip. Before timing, each is
run once untimed and its files checked byte for byte; through the proxy, the
requests it made are counted. Prints Markdown tables (medians and ratios).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from secretinit_vault.testing import DevServer, bao_binary

from bench._common import (
    Contender,
    emptier,
    markdown_table,
    race,
    ratio,
    seconds,
    time_command,
)
from bench.vault.delay_proxy import DelayProxy

SIZES = (1, 10, 100, 1000)
SCENARIOS = ("paths", "keys")
ONE_WAY_DELAY = 0.001  # 2 ms per round trip
POLICY = 'path "secret/data/bench/*" { capabilities = ["read"] }'
HVAC_LOOP = Path(__file__).with_name("hvac_loop.py")


@dataclass
class Job:
    """N secrets as (file name, path, key), and the bytes each file must hold."""

    scenario: str
    n: int
    secrets: list[tuple[str, str, str]]
    values: dict[str, bytes]


def plant(server: DevServer, scenario: str, n: int) -> Job:
    values = {f"BENCH_{i}": secrets.token_urlsafe(24).encode() for i in range(n)}
    if scenario == "paths":
        job = Job(
            scenario,
            n,
            [(f"BENCH_{i}", f"secret/bench/paths{n}/s{i}", "value") for i in range(n)],
            values,
        )
        for name, path, _key in job.secrets:
            server.api(
                "POST",
                f"secret/data/{path.partition('/')[2]}",
                {"data": {"value": values[name].decode()}},
            )
    else:
        path = f"secret/bench/keys{n}"
        job = Job(scenario, n, [(f"BENCH_{i}", path, f"k{i}") for i in range(n)], values)
        # The API refuses a request of more than 1000 JSON strings: write in patches.
        data = {key: values[name].decode() for name, _path, key in job.secrets}
        keys = list(data)
        for start in range(0, n, 400):
            chunk = {key: data[key] for key in keys[start : start + 400]}
            server.api(
                "POST" if start == 0 else "PATCH",
                f"secret/data/bench/keys{n}",
                {"data": chunk},
                headers={} if start == 0 else {"Content-Type": "application/merge-patch+json"},
            )
    return job


def agent_config(job: Job, address: str, token_file: Path, out: Path) -> str:
    blocks = [
        f'vault {{\n  address = "{address}"\n  retry {{ num_retries = 1 }}\n}}',
        'auto_auth {\n  method "token_file" {\n'
        f'    config = {{ token_file_path = "{token_file}" }}\n  }}\n}}',
        "template_config {\n  exit_on_retry_failure = true\n}",
        "exit_after_auth = true",
    ]
    for name, path, key in job.secrets:
        mount, _, rest = path.partition("/")
        contents = (
            f'{{{{ with secret "{mount}/data/{rest}" }}}}{{{{ .Data.data.{key} }}}}{{{{ end }}}}'
        )
        blocks.append(
            f"template {{\n  contents = {json.dumps(contents)}\n"
            f'  destination = "{out / name}"\n  perms = "0400"\n}}'
        )
    return "\n".join(blocks) + "\n"


def check(job: Job, directory: Path, who: str) -> None:
    for name, value in job.values.items():
        path = directory / name
        if path.read_bytes() != value or (path.stat().st_mode & 0o777) != 0o400:
            raise SystemExit(f"{who} wrote {path} wrongly: the benchmark would time a broken job")


def contenders(
    job: Job, address: str, token: str, token_file: Path, work: Path, label: str
) -> list[Contender]:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work / "home")}
    vault = {**base, "VAULT_ADDR": address, "VAULT_TOKEN": token}
    outs = {name: work / "out" / label / name for name in ("secretinit", "agent", "hvac")}
    for out in outs.values():
        out.mkdir(parents=True, exist_ok=True, mode=0o700)

    refs = {name: f"vault://{path}#{key}" for name, path, key in job.secrets}
    secretinit = Path(sys.executable).with_name("secretinit")
    config = work / f"agent-{label}.hcl"
    config.write_text(agent_config(job, address, token_file, outs["agent"]))
    spec = work / f"hvac-{label}.json"
    spec.write_text(json.dumps({"dir": str(outs["hvac"]), "secrets": job.secrets}))
    return [
        Contender(
            "secretinit",
            time_command(
                [str(secretinit), "fetch", "--dir", str(outs["secretinit"])],
                {**vault, **refs, "SECRETINIT_LOG_LEVEL": "warning"},
            ),
            emptier(outs["secretinit"]),
        ),
        Contender(
            "agent",
            time_command([bao_binary(), "agent", f"-config={config}"], base),
            emptier(outs["agent"]),
        ),
        Contender(
            "hvac loop",
            time_command([sys.executable, str(HVAC_LOOP), str(spec)], vault),
            emptier(outs["hvac"]),
        ),
    ]


def startup_table(runs: int) -> str:
    python = sys.executable
    rows = [
        Contender("python -c pass", time_command([python, "-c", "pass"])),
        Contender("python -c 'import hvac'", time_command([python, "-c", "import hvac"])),
        Contender(
            "python -c 'import secretinit_vault'",
            time_command([python, "-c", "import secretinit_vault"]),
        ),
        Contender("bao version", time_command([bao_binary(), "version"])),
    ]
    race(rows, runs)
    bare = rows[0].median
    return markdown_table(
        ["start-up", "median", "vs bare python"],
        [[c.name, seconds(c.median), ratio(c.median, bare)] for c in rows],
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.vault", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: N = 1, 10; 1 timed run")
    parser.add_argument("--runs", type=int, help="timed runs per cell (default 5, 1 with --quick)")
    parser.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        help="comma-separated N (default 1,10,100,1000)",
    )
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 5)
    sizes = args.sizes or ([1, 10] if args.quick else list(SIZES))

    shm = Path("/dev/shm") if os.path.isdir("/dev/shm") else None
    work = Path(tempfile.mkdtemp(prefix="secretinit-bench-vault-", dir=shm))
    (work / "home").mkdir()
    server = DevServer(work / "bao").start()
    proxy = DelayProxy(server.port, ONE_WAY_DELAY).start()
    try:
        server.api("POST", "sys/policies/acl/bench", {"policy": POLICY})
        token = server.api("POST", "auth/token/create", {"policies": ["bench"], "ttl": "4h"})[
            "auth"
        ]["client_token"]
        token_file = work / "token"
        token_file.write_text(token)
        jobs = {(s, n): plant(server, s, n) for s in SCENARIOS for n in sizes}
        networks = [("loopback", server.address), ("+2 ms RTT", f"http://127.0.0.1:{proxy.port}")]
        results: dict[tuple[str, str, int], list[Contender]] = {}
        requests: dict[tuple[str, int], dict[str, int]] = {}
        for network, address in networks:
            for (scenario, n), job in jobs.items():
                label = f"{network[0]}-{scenario}-{n}"
                race_ = contenders(job, address, token, token_file, work, label)
                for contender in race_:  # untimed: check the job is done right, count requests
                    before = sum(proxy.requests.values())
                    assert contender.before is not None
                    contender.before()
                    contender.once()
                    out = work / "out" / label / contender.name.split()[0]
                    check(job, out, contender.name)
                    if network != "loopback":
                        counts = requests.setdefault((scenario, n), {})
                        counts[contender.name] = sum(proxy.requests.values()) - before
                started = time.monotonic()
                race(race_, runs, warmup=0)
                results[(network, scenario, n)] = race_
                cells = ", ".join(f"{c.name} {seconds(c.median)}" for c in race_)
                print(
                    f"# {network}, {scenario}, N={n}: {cells} ({time.monotonic() - started:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        proxy.stop()
        server.kill()
        shutil.rmtree(work, ignore_errors=True)

    print(f"## secretinit fetch vs OpenBao agent vs sequential hvac loop ({runs} runs, medians)\n")
    for network, _address in networks:
        for scenario in SCENARIOS:
            title = "one key on each of N paths" if scenario == "paths" else "N keys of one path"
            print(f"### {network}: {title}\n")
            rows = []
            for n in sizes:
                s, agent, loop = results[(network, scenario, n)]
                rows.append(
                    [
                        n,
                        seconds(s.median),
                        seconds(agent.median),
                        seconds(loop.median),
                        ratio(agent.median, s.median),
                        ratio(loop.median, s.median),
                    ]
                )
            print(
                markdown_table(
                    [
                        "N",
                        "secretinit",
                        "agent",
                        "hvac loop",
                        "agent / secretinit",
                        "hvac loop / secretinit",
                    ],
                    rows,
                )
            )
            print()
    print("### Vault requests per run (counted by the delay proxy)\n")
    rows = [
        [scenario, n, *(requests[(scenario, n)][c] for c in ("secretinit", "agent", "hvac loop"))]
        for scenario in SCENARIOS
        for n in sizes
    ]
    print(markdown_table(["scenario", "N", "secretinit", "agent", "hvac loop"], rows))
    print("\n### Start-up floor\n")
    print(startup_table(runs * 2 + 1))


if __name__ == "__main__":
    main()
