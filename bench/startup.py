"""Start-up time and resident memory of secretinit against what users run today.

    uv run python -m bench.startup [--runs N] [--quick]

1. Start-up: the wall time of a whole container-style start that runs
   ``true``, side by side and interleaved: secretinit with one secret from an
   env file, secretinit with no secret, ``--exec``, a bare ``python -I -c
   pass``, ``tini -- true`` and ``dumb-init true``.
2. Memory: the resident set (RSS) and proportional set (PSS) of the process
   that stays resident as PID 1's stand-in while the application sleeps:
   secretinit's lean supervisor, tini, dumb-init, and for contrast a Python
   process that kept the CLI's imports (what the exec into the lean
   supervisor avoids).

Needs ``tini`` (Debian: ``apt-get install tini``) and ``dumb-init`` (in the
dev dependencies).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench._common import Contender, markdown_table, race, ratio, seconds, time_command

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
EXEC_DIR = f"/dev/shm/secretinit-bench-{os.getpid()}"


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(BIN))
    if found is None:
        hint = "apt-get install tini" if name == "tini" else "uv sync (dev dependencies)"
        sys.exit(f"bench.startup needs {name}: {hint}")
    return found


def startup(runs: int) -> str:
    secretinit = str(BIN / "secretinit")
    env = dict(os.environ, DB_PASSWORD="env-file://examples/dev.env#DB_PASSWORD")
    env_file = ["--env-file", "examples/dev.env"]
    contenders = [
        Contender(
            "secretinit run, 1 secret (env-file)",
            time_command([secretinit, "run", *env_file, "--", "true"], env),
        ),
        Contender("secretinit run, no secret", time_command([secretinit, "run", "--", "true"])),
        Contender(
            "secretinit run --exec, 1 secret",
            # A fixed --dir: nothing would remove a fresh directory after an exec.
            time_command(
                [secretinit, "run", "--exec", "--dir", EXEC_DIR, *env_file, "--", "true"], env
            ),
        ),
        Contender("python -I -c pass", time_command([sys.executable, "-I", "-c", "pass"])),
        Contender("tini -- true", time_command([tool("tini"), "--", "true"])),
        Contender("dumb-init true", time_command([tool("dumb-init"), "true"])),
    ]
    os.chdir(ROOT)
    race(contenders, runs, warmup=2)
    python = contenders[3].median
    tini = contenders[4].median
    rows = [
        [c.name, seconds(c.median), ratio(c.median, python), ratio(c.median, tini)]
        for c in contenders
    ]
    return markdown_table(["start-up of `... true`", "median", "vs python -I", "vs tini"], rows)


def memory_of(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of ``pid`` in KiB."""
    rss = pss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            pss = int(line.split()[1])
    return rss, pss


def resident(argv: list[str], env: dict[str, str], samples: int) -> tuple[float, float]:
    """Median RSS and PSS (KiB) of the process ``argv`` starts, once it has settled."""
    found = []
    for _ in range(samples):
        process = subprocess.Popen(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            time.sleep(1.0)  # let secretinit exec into its supervisor and the child start
            found.append(memory_of(process.pid))
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(10)
    return statistics.median(r for r, _ in found), statistics.median(p for _, p in found)


def memory(samples: int) -> str:
    env = dict(os.environ, DB_PASSWORD="env-file://examples/dev.env#DB_PASSWORD")
    sleep = ["sleep", "60"]
    rows = []
    cases = [
        (
            "secretinit lean supervisor",
            [str(BIN / "secretinit"), "run", "--env-file", "examples/dev.env", "--", *sleep],
        ),
        ("tini", [tool("tini"), "--", *sleep]),
        ("dumb-init", [tool("dumb-init"), *sleep]),
        (
            "python holding the CLI's imports (avoided)",
            [
                sys.executable,
                "-c",
                "import secretinit._cli, secretinit._env_file, time; time.sleep(60)",
            ],
        ),
    ]
    measured = [(name, *resident(argv, env, samples)) for name, argv in cases]
    tini_rss = measured[1][1]
    for name, rss, pss in measured:
        rows.append([name, f"{rss / 1024:.1f} MiB", f"{pss / 1024:.1f} MiB", ratio(rss, tini_rss)])
    return markdown_table(["resident process", "RSS", "PSS", "RSS vs tini"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=40, help="timed runs per contender")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 3 runs, 1 memory sample")
    args = parser.parse_args()
    runs, samples = (3, 1) if args.quick else (args.runs, 5)
    os.chdir(ROOT)
    print(f"## Start-up ({runs} runs each, interleaved; {os.cpu_count()} CPUs)\n")
    print(startup(runs))
    print(f"\n## Resident memory while the application sleeps (median of {samples})\n")
    print(memory(samples))
    shutil.rmtree(EXEC_DIR, ignore_errors=True)


if __name__ == "__main__":
    main()
