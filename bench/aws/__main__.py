"""secretinit fetch vs a plain boto3 loop, N = 1, 10, 100, 1000 secrets from Secrets Manager.

    uv run python -m bench.aws            # 5 timed runs per contender and N, ~3 min
    uv run python -m bench.aws --quick    # 1 run each, no warm-up: a smoke test
    uv run python -m bench.aws --write    # also rewrite the figures in bench/aws/RESULTS.md

Both contenders are whole processes doing the whole job (start, import
boto3, fetch N secrets, write N files to tmpfs), run interleaved against one
moto server in a third process that counts the API calls it answers.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import platform
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import requests

from bench._common import Contender, markdown_table, race, ratio, seconds, time_command

SIZES = (1, 10, 100, 1000)
PREFIX = "bench/s"
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
LOOP = HERE / "_boto3_loop.py"
BEGIN, END = "<!-- figures: written by python -m bench.aws --write -->", "<!-- /figures -->"
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    """The counting moto server (bench/aws/_server.py) in its own process."""

    process: subprocess.Popen[str]
    url: str

    def calls(self, reset: bool = False) -> dict[str, int]:
        method = requests.post if reset else requests.get
        answer: dict[str, int] = method(f"{self.url}/_bench/calls", timeout=10).json()
        return answer

    def cpu(self) -> float:
        """CPU seconds the server process has used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS


@contextmanager
def moto_server() -> Iterator[Server]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.aws._server"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=HERE.parent.parent,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield Server(process, f"http://127.0.0.1:{port}")
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(10)


def environment(server: Server, home: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SECRETINIT_"))}
    # Production images carry bytecode (pip compiles it at install); without
    # it every start compiles botocore again (~0.5 s of CPU here). The
    # untimed checked run writes the caches for both contenders.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        HOME=home,
        AWS_ACCESS_KEY_ID="AKIDBENCHEXAMPLE",
        AWS_SECRET_ACCESS_KEY="bench-secret-key",
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=server.url,
        AWS_CONFIG_FILE=os.path.join(home, "none"),
        AWS_SHARED_CREDENTIALS_FILE=os.path.join(home, "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


def seed(server: Server, env: Mapping[str, str], count: int) -> dict[str, str]:
    """Create ``count`` secrets with distinct random values; return name -> value."""
    client = boto3.client(
        "secretsmanager",
        endpoint_url=server.url,
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    planted = {}
    for i in range(count):
        name, value = f"S{i:04d}", secrets.token_urlsafe(24)
        client.create_secret(Name=f"{PREFIX}{i:04d}", SecretString=value)
        planted[name] = value
    client.close()
    return planted


def emptied(directory: Path) -> Callable[[], None]:
    def empty() -> None:
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(mode=0o700)

    return empty


@dataclass
class Figures:
    """One contender at one N: timings from the race, calls and CPU from a checked run."""

    contender: Contender
    calls: int = 0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    checked: dict[str, str] = field(default_factory=dict)


def checked_run(
    figures: Figures, server: Server, directory: Path, expected: dict[str, str]
) -> None:
    """Run once untimed: count the calls and CPU, and check every file written."""
    contender = figures.contender
    assert contender.before is not None
    contender.before()
    server.calls(reset=True)
    server_cpu = server.cpu()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    contender.once()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    figures.server_cpu = server.cpu() - server_cpu
    figures.client_cpu = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    figures.calls = sum(server.calls().values())
    # secretinit's layout: NAME -> ..data/NAME; the ".." entries are not files.
    written = {p.name: p.read_text() for p in directory.iterdir() if not p.name.startswith("..")}
    if written != expected:
        raise SystemExit(f"{contender.name} wrote wrong files at N={len(expected)}")


def run(quick: bool) -> tuple[str, dict[int, tuple[Figures, Figures]]]:
    runs, warmup = (1, 0) if quick else (5, 1)
    secretinit = str(Path(sys.executable).with_name("secretinit"))
    results: dict[int, tuple[Figures, Figures]] = {}
    with (
        tempfile.TemporaryDirectory(dir="/dev/shm", prefix="bench-aws-") as work,
        moto_server() as server,
    ):
        env = environment(server, work)
        started = time.monotonic()
        planted = seed(server, env, max(SIZES))
        print(
            f"seeded {len(planted)} secrets in {time.monotonic() - started:.1f} s", file=sys.stderr
        )
        for n in SIZES:
            expected = {name: planted[name] for name in sorted(planted)[:n]}
            si_dir, loop_dir = Path(work, "secretinit"), Path(work, "loop")
            si_env = dict(env)
            si_env.update({name: f"aws-sm://{PREFIX}{name[1:]}" for name in expected})
            fetch = Contender(
                "secretinit fetch",
                time_command(
                    [secretinit, "fetch", "--dir", str(si_dir), "--log-level", "warning"], si_env
                ),
                before=emptied(si_dir),
            )
            loop = Contender(
                "boto3 loop",
                time_command([sys.executable, str(LOOP), str(loop_dir), PREFIX, str(n)], env),
                before=emptied(loop_dir),
            )
            pair = (Figures(fetch), Figures(loop))
            if n == SIZES[0]:  # a first start writes bytecode caches: not counted
                for contender in (fetch, loop):
                    assert contender.before is not None
                    contender.before()
                    contender.once()
            checked_run(pair[0], server, si_dir, expected)
            checked_run(pair[1], server, loop_dir, expected)
            race([fetch, loop], runs, warmup)
            results[n] = pair
            print(f"N={n}: {seconds(fetch.median)} vs {seconds(loop.median)}", file=sys.stderr)
    return f"{runs} timed runs (+{warmup} warm-up) per contender and N", results


def table(results: dict[int, tuple[Figures, Figures]]) -> str:
    rows = []
    for n, (si, loop) in results.items():
        rows.append(
            [
                n,
                seconds(si.contender.median),
                seconds(loop.contender.median),
                ratio(loop.contender.median, si.contender.median),
                si.calls,
                loop.calls,
                ratio(loop.calls, si.calls),
                seconds(si.server_cpu),
                seconds(loop.server_cpu),
                seconds(si.client_cpu),
                seconds(loop.client_cpu),
            ]
        )
    return markdown_table(
        [
            "N",
            "secretinit fetch",
            "boto3 loop",
            "time: loop / secretinit",
            "calls: secretinit",
            "calls: loop",
            "calls: loop / secretinit",
            "moto CPU: secretinit",
            "moto CPU: loop",
            "client CPU: secretinit",
            "client CPU: loop",
        ],
        rows,
    )


def report(runs: str, results: dict[int, tuple[Figures, Figures]], command: str) -> str:
    si, loop = results[max(results)]
    fewer_calls = loop.calls / si.calls
    less_time = loop.contender.median / si.contender.median
    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}" for name in ("boto3", "moto", "secretinit")
    )
    return "\n".join(
        [
            BEGIN,
            f"`{command}` on {datetime.date.today().isoformat()}: {runs}; medians.",
            f"Python {platform.python_version()}, {versions}; {os.cpu_count()} cores, "
            f"load average {os.getloadavg()[0]:.2f} at the end.",
            "",
            table(results),
            "",
            f"At N = {max(results)}: {fewer_calls:.0f}x fewer calls (goal 10x: "
            f"{'met' if fewer_calls >= 10 else 'NOT met'}), {less_time:.1f}x less time "
            f"(goal 5x: {'met' if less_time >= 5 else 'NOT met'}).",
            END,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.aws", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run each, no warm-up")
    parser.add_argument("--write", action="store_true", help=f"rewrite the figures in {RESULTS}")
    args = parser.parse_args()
    command = "uv run python -m bench.aws" + (" --quick" if args.quick else "")
    runs, results = run(args.quick)
    text = report(runs, results, command)
    print(text)
    if args.write:
        old = RESULTS.read_text() if RESULTS.exists() else ""
        if BEGIN in old and END in old:
            new = old[: old.index(BEGIN)] + text + old[old.index(END) + len(END) :]
        else:
            new = old + ("\n" if old else "") + text + "\n"
        RESULTS.write_text(new)


if __name__ == "__main__":
    main()
