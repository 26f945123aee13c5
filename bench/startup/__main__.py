"""Start-up time and resident memory of secretinit, against this code before the start-up
work (issue 11) and against what users run instead, side by side in one run.

    uv run python -m bench.startup                  # everything (about 10 minutes here)
    uv run python -m bench.startup --quick          # a smoke run
    uv run python -m bench.startup --write          # also rewrite bench/startup/RESULTS.md

The baseline is another commit (``--baseline``, default e1d59ef, main when
the work began) built into a virtual environment of its own under /var/tmp
(once; see _baseline.py). Both are compiled to bytecode and run with
PYTHONDONTWRITEBYTECODE unset, as a production image runs. Sections:

1. A whole ``run -- true`` with one env-file secret, ``run --exec``, ``python
   -I -c pass``, ``python -I -S -c pass``, tini and dumb-init, interleaved;
   the supervisor stage is ``run`` minus ``run --exec``, paired by round.
2. What each start imports, from ``python -X importtime``: modules and their
   summed self time; with ``--callgrind`` (valgrind), instructions executed,
   which do not depend on the machine's load.
3. The resident supervisor's memory while the command sleeps, against a
   sleeping ``python -I -S``, tini and dumb-init.
4. ``check`` of a TOML config of 10, 100 and 1000 env-file secrets against
   the same secrets as environment references.
5. Each provider's whole ``fetch`` of one secret against its plain SDK script
   (OpenBao dev server, moto, the suite's Key Vault fake), and the ten
   costliest imports of each start.

Needs tini (``apt-get install tini``) and dumb-init (dev dependencies).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._common import (
    Contender,
    markdown_table,
    memory_of,
    race,
    ratio,
    seconds,
    time_command,
)
from bench.startup import _baseline, _providers

ROOT = _baseline.ROOT
RESULTS = Path(__file__).with_name("RESULTS.md")
SECTIONS = ("startup", "imports", "memory", "config", "providers")
SECRET = {"DB_PASSWORD": "env-file://examples/dev.env#DB_PASSWORD"}


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        hint = "apt-get install tini" if name == "tini" else "uv sync (dev dependencies)"
        sys.exit(f"bench.startup needs {name}: {hint}")
    return found


def environment(**extra: str) -> dict[str, str]:
    """os.environ as a production start sees it: bytecode read, no secretinit settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECRETINIT_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(extra)
    return env


def run_argv(bin_dir: Path, out: Path, *options: str, command: str = "true") -> list[str]:
    """``secretinit run [OPTIONS] --dir OUT --env-file examples/dev.env -- COMMAND``."""
    secretinit = str(bin_dir / "secretinit")
    return [
        secretinit,
        "run",
        *options,
        "--dir",
        str(out),
        "--env-file",
        "examples/dev.env",
        "--",
        command,
    ]


def paired_median(a: Contender, b: Contender) -> float:
    """The median of a's time minus b's, round by round (they ran side by side)."""
    return statistics.median(x - y for x, y in zip(a.seconds, b.seconds, strict=True))


def startup(bins: dict[str, Path], work: Path, runs: int) -> tuple[str, str]:
    env = environment(**SECRET)
    python = str(bins["this checkout"] / "python")
    contenders = []
    for label, bin_dir in bins.items():
        out = work / f"run-{label.replace(' ', '-')}"
        run_args = run_argv(bin_dir, out)
        exec_args = run_argv(bin_dir, out, "--exec")
        contenders.append(
            Contender(f"secretinit run, 1 env-file secret ({label})", time_command(run_args, env))
        )
        contenders.append(
            Contender(
                f"secretinit run --exec, 1 env-file secret ({label})", time_command(exec_args, env)
            )
        )
    contenders += [
        Contender("python -I -c pass", time_command([python, "-I", "-c", "pass"], env)),
        Contender("python -I -S -c pass", time_command([python, "-I", "-S", "-c", "pass"], env)),
        Contender("tini -- true", time_command([tool("tini"), "--", "true"], env)),
        Contender("dumb-init true", time_command([tool("dumb-init"), "true"], env)),
    ]
    race(contenders, runs, warmup=2)
    by_name = {c.name: c for c in contenders}
    bare, lean, tini = (
        by_name[n].median for n in ("python -I -c pass", "python -I -S -c pass", "tini -- true")
    )
    rows = [
        [c.name, seconds(c.median), ratio(c.median, bare), ratio(c.median, tini)]
        for c in contenders
    ]
    table = markdown_table(["start-up of `... true`", "median", "vs python -I", "vs tini"], rows)
    goals = []
    for label in bins:
        run = by_name[f"secretinit run, 1 env-file secret ({label})"]
        exec_ = by_name[f"secretinit run --exec, 1 env-file secret ({label})"]
        stage = paired_median(run, exec_)
        goals.append([label, ratio(run.median, bare), f"{seconds(stage)} = {ratio(stage, lean)}"])
    goals.append(["goal", "≤ 5x", "≤ 1.5x"])
    goal_table = markdown_table(
        [
            "code",
            "run / python -I -c pass",
            "supervisor stage (run - run --exec) / python -I -S -c pass",
        ],
        goals,
    )
    return table, goal_table


IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def importtime(argv: list[str], env: dict[str, str], samples: int) -> dict[str, float]:
    """Median self time (µs) of each module ``argv``'s process imports (-X importtime)."""
    found: dict[str, list[int]] = {}
    for _ in range(samples):
        result = subprocess.run(
            [argv[0], "-X", "importtime", *argv[1:]],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
        )
        for match in IMPORT_LINE.finditer(result.stderr):
            found.setdefault(match.group(4), []).append(int(match.group(1)))
    return {name: statistics.median(times) for name, times in found.items()}


def imports(bins: dict[str, Path], work: Path, samples: int) -> str:
    env = environment(**SECRET)
    rows = []
    for label, bin_dir in bins.items():
        python = str(bin_dir / "python")
        main = importtime([python, *run_argv(bin_dir, work / "imports", "--exec")], env, samples)
        supervisor = importtime(supervisor_argv(bin_dir), env, samples)
        rows.append(
            [
                label,
                str(len(main)),
                f"{sum(main.values()) / 1000:.1f} ms",
                str(len(supervisor)),
                f"{sum(supervisor.values()) / 1000:.1f} ms",
            ]
        )
    return markdown_table(
        [
            "code",
            "main process: modules",
            "their import time",
            "supervisor: modules",
            "their import time",
        ],
        rows,
    )


def supervisor_argv(bin_dir: Path) -> list[str]:
    """The supervisor stage alone, supervising ``true``, as ``run`` execs it."""
    python = str(bin_dir / "python")
    package = subprocess.run(
        [python, "-I", "-c", "import secretinit, os; print(os.path.dirname(secretinit.__file__))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    script = Path(package) / "_supervisor_main.py"
    if not script.exists():  # before the start-up work the module was the script
        script = Path(package) / "_supervisor.py"
    return [python, "-I", "-S", "-B", str(script), "--", "true"]


def instructions(valgrind: str, argv: list[str], work: Path) -> list[tuple[bool, int, int]]:
    """Instructions of each process image ``argv`` ran: (launched process, part, count).

    ``--dump-before=execve`` splits a process at each exec: part 1 is what
    ran before its first exec, part 0 the image that ran last. A child's
    part 1 counts, again, what its parent ran before the fork: the caller
    leaves those out.
    """
    out = work / "callgrind"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    process = subprocess.Popen(
        [
            valgrind,
            "--tool=callgrind",
            "--trace-children=yes",
            "--dump-before=execve",
            f"--callgrind-out-file={out}/cg.%p",
            *argv,
        ],
        env=environment(**SECRET),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    process.wait()
    found = []
    for path in out.iterdir():
        _, pid, *part = path.name.split(".")
        total = re.search(r"^(?:summary|totals): (\d+)", path.read_text(errors="replace"), re.M)
        if total:
            found.append(
                (int(pid) == process.pid, int(part[0]) if part else 0, int(total.group(1)))
            )
    return found


def callgrind(bins: dict[str, Path], work: Path) -> str | None:
    """Instructions executed (valgrind's callgrind), which the machine's load does not change."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return "(valgrind is not installed: apt-get install valgrind)"
    python = str(bins["this checkout"] / "python")
    bare = sum(n for _, _, n in instructions(valgrind, [python, "-I", "-c", "pass"], work))
    lean = sum(n for _, _, n in instructions(valgrind, [python, "-I", "-S", "-c", "pass"], work))
    rows = [
        ["python -I -c pass", f"{bare / 1e6:.1f} M", "1.00x", ""],
        ["python -I -S -c pass", f"{lean / 1e6:.1f} M", ratio(lean, bare), "1.00x"],
    ]
    for label, bin_dir in bins.items():
        run = [
            str(bin_dir / "python"),
            *run_argv(bin_dir, work / "cg", "--exec", command="/bin/true"),
        ]
        # The main process: the launched one, before it execs the command.
        main = sum(
            n for launched, part, n in instructions(valgrind, run, work) if launched and part == 1
        )
        # The supervisor and the command it starts (not the fork's copy of it).
        stage = instructions(valgrind, supervisor_argv(bin_dir), work)
        supervisor = sum(n for launched, part, n in stage if launched or part == 0)
        rows += [
            [f"main process of run ({label})", f"{main / 1e6:.1f} M", ratio(main, bare), ""],
            [
                f"supervisor stage ({label})",
                f"{supervisor / 1e6:.1f} M",
                "",
                ratio(supervisor, lean),
            ],
            [
                f"run: both ({label})",
                f"{(main + supervisor) / 1e6:.1f} M",
                ratio(main + supervisor, bare),
                "",
            ],
        ]
    return markdown_table(
        ["instructions (callgrind)", "count", "vs python -I", "vs python -I -S"], rows
    )


def resident(argv: list[str], env: dict[str, str], samples: int) -> tuple[float, float]:
    """Median RSS and PSS (KiB) of the process ``argv`` starts, once it has settled."""
    found = []
    for _ in range(samples):
        process = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            time.sleep(1.5)  # secretinit has exec'd into its supervisor, the command sleeps
            found.append(memory_of(process.pid))
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(10)
    return statistics.median(r for r, _ in found), statistics.median(p for _, p in found)


def memory(bins: dict[str, Path], work: Path, samples: int) -> str:
    env = environment(**SECRET)
    python = str(bins["this checkout"] / "python")
    cases = [
        (
            f"secretinit's supervisor ({label})",
            [*run_argv(bin_dir, work / "memory", command="sleep"), "60"],
        )
        for label, bin_dir in bins.items()
    ]
    cases += [
        ("python -I -S sleeping", [python, "-I", "-S", "-c", "import time; time.sleep(60)"]),
        ("tini", [tool("tini"), "--", "sleep", "60"]),
        ("dumb-init", [tool("dumb-init"), "sleep", "60"]),
    ]
    measured = [(name, *resident(argv, env, samples)) for name, argv in cases]
    lean = next(rss for name, rss, _ in measured if name.startswith("python -I -S"))
    tini = next(rss for name, rss, _ in measured if name == "tini")
    rows = [
        [name, f"{rss / 1024:.2f} MiB", f"{pss / 1024:.2f} MiB", ratio(rss, lean), ratio(rss, tini)]
        for name, rss, pss in measured
    ]
    return markdown_table(
        ["resident process", "RSS", "PSS", "RSS vs python -I -S (goal ≤ 1.2x)", "RSS vs tini"], rows
    )


def config_scaling(bins: dict[str, Path], work: Path, runs: int) -> str:
    """check of N env-file secrets, declared in a TOML config or as environment references."""
    rows = []
    secretinit = str(bins["this checkout"] / "secretinit")
    base: dict[str, float] = {}
    for n in (10, 100, 1000):
        env_file = work / f"dev{n}.env"
        env_file.write_text("".join(f"S{i}=value-{i}-{os.urandom(6).hex()}\n" for i in range(n)))
        refs = {f"S{i}": f"env-file://{env_file}#S{i}" for i in range(n)}
        config = work / f"c{n}.toml"
        config.write_text(
            "".join(f'[secrets.S{i}]\nfrom = "{ref}"\n\n' for i, ref in enumerate(refs.values()))
        )
        check = [secretinit, "check", "--dir", str(work / "check")]
        contenders = [
            Contender("toml", time_command([*check, "--config", str(config)], environment())),
            Contender("env", time_command(check, environment(**refs))),
        ]
        race(contenders, runs, warmup=1)
        toml, env = (c.median for c in contenders)
        base.setdefault("toml", toml)
        base.setdefault("env", env)
        rows.append(
            [
                str(n),
                seconds(toml),
                seconds(env),
                seconds(toml - base["toml"]),
                seconds(env - base["env"]),
            ]
        )
    return markdown_table(
        [
            "N",
            "TOML config",
            "environment references",
            "TOML: more than N=10 (goal ≤ 50 ms at 1000)",
            "env: more than N=10",
        ],
        rows,
    )


def providers(
    bins: dict[str, Path], work: Path, runs: int, schemes: tuple[str, ...]
) -> tuple[str, dict[str, list[str]]]:
    rows = []
    argvs: dict[str, tuple[list[str], dict[str, str]]] = {}
    with _providers.stores(work, schemes) as stores:
        for scheme, store in stores.items():
            contenders = _providers.contenders(store, bins, work)
            _providers.check_contenders(contenders, work, scheme)
            race(contenders, runs, warmup=1)
            times = {c.name: c.median for c in contenders}
            current = times[f"secretinit fetch ({next(iter(bins))})"]
            baseline = times.get(f"secretinit fetch ({list(bins)[1]})")
            sdk = times["plain SDK script"]
            rows.append(
                [
                    scheme,
                    seconds(current),
                    seconds(baseline) if baseline else "no provider",
                    seconds(sdk),
                    ratio(current, baseline) if baseline else "",
                    ratio(current, sdk),
                ]
            )
            env = environment(
                **store.env, BENCH_SECRET=store.reference, SECRETINIT_LOG_LEVEL="warning"
            )
            out = work / "out" / f"{scheme}-importtime"
            out.mkdir(mode=0o700)
            bin_dir = bins["this checkout"]
            argvs[scheme] = (
                [str(bin_dir / "python"), str(bin_dir / "secretinit"), "fetch", "--dir", str(out)],
                env,
            )
        costliest = {scheme: top_imports(*argvs[scheme]) for scheme in argvs}
    table = markdown_table(
        [
            "store",
            "this checkout",
            "baseline",
            "plain SDK script",
            "this / baseline (goal ≤ 0.5)",
            "this / SDK script",
        ],
        rows,
    )
    return table, costliest


def top_imports(argv: list[str], env: dict[str, str], count: int = 10) -> list[str]:
    times = importtime(argv, env, 5)
    return [
        f"{name} {value / 1000:.1f} ms"
        for name, value in sorted(times.items(), key=lambda item: -item[1])[:count]
    ]


def costliest_table(costliest: dict[str, list[str]]) -> str:
    rows = [[name, ", ".join(items)] for name, items in costliest.items()]
    return markdown_table(
        ["start", "ten costliest imports (median self time, -X importtime)"], rows
    )


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} CPUs"


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.startup", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--runs", type=int, default=40, help="timed runs of each start-up contender"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 3 runs, 1 sample, one provider"
    )
    parser.add_argument(
        "--baseline", default=_baseline.DEFAULT_REVISION, help="the commit compared with"
    )
    parser.add_argument(
        "--callgrind", action="store_true", help="also count instructions (valgrind)"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=SECTIONS,
        help="run only this section (repeatable); default: all",
    )
    parser.add_argument("--write", action="store_true", help=f"rewrite {RESULTS.relative_to(ROOT)}")
    args = parser.parse_args()
    runs, samples, provider_runs = (3, 1, 2) if args.quick else (args.runs, 5, 10)
    schemes = ("vault",) if args.quick else _providers.PROVIDERS
    os.chdir(ROOT)
    bins = {
        "this checkout": _baseline.prepare_current(),
        f"baseline {args.baseline}": _baseline.build(args.baseline),
    }
    sections = [f"Measured with {load()} at the start."]
    with tempfile.TemporaryDirectory(prefix="bench-startup-", dir="/dev/shm") as tmp:
        work = Path(tmp)
        (work / "home").mkdir()

        def section(title: str, *tables: str | None) -> None:
            text = f"## {title}\n\n" + "\n\n".join(t for t in tables if t)
            print(text + "\n", flush=True)
            sections.append(text)

        chosen = set(args.only or SECTIONS)
        if "startup" in chosen:
            table, goals = startup(bins, work, runs)
            section(f"Start-up of a whole run ({runs} runs each, interleaved)", table, goals)
        if "imports" in chosen:
            section(
                f"What the starts import (median of {samples}; instructions with --callgrind)",
                imports(bins, work, samples),
                callgrind(bins, work) if args.callgrind else None,
            )
        if "memory" in chosen:
            section(
                f"Resident memory while the command sleeps (median of {max(1, samples // 2)})",
                memory(bins, work, max(1, samples // 2)),
            )
        if "config" in chosen:
            section(
                f"check of N env-file secrets ({max(3, runs // 4)} runs each)",
                config_scaling(bins, work, max(3, runs // 4)),
            )
        if "providers" in chosen:
            table, costliest = providers(bins, work, provider_runs, schemes)
            current = bins["this checkout"]
            costliest["run, 1 env-file secret"] = top_imports(
                [str(current / "python"), *run_argv(current, work / "top", "--exec")],
                environment(**SECRET),
            )
            section(
                f"Each provider's fetch of one secret, whole process ({provider_runs} runs each)",
                table,
            )
            section(
                "The ten costliest imports of each start (this checkout)",
                costliest_table(costliest),
            )
    sections.append(f"Finished with {load()}.")
    if args.write:
        command = "uv run python -m bench.startup" + (" --callgrind" if args.callgrind else "")
        RESULTS.write_text(
            f"# Start-up and resident cost\n\n    {command} --write\n\n"
            + "\n\n".join(sections)
            + "\n"
        )


if __name__ == "__main__":
    main()
