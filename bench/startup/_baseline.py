"""Another commit of secretinit, built into a virtual environment of its own.

The start-up benchmark compares this checkout with the code before the
start-up work (issue 11) in the same run, interleaved: the commit's files
(``git archive``) go to a directory under /var/tmp, ``uv sync --frozen
--all-packages --no-dev`` installs it with every provider and its SDK, and
everything is compiled to bytecode, as a production image carries it.
Built once per commit; later runs reuse it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
# The main branch when the start-up work began.
DEFAULT_REVISION = "e1d59ef"


def uv() -> list[str]:
    """How to run uv here: on PATH, or as the module of the Python that has it."""
    found = shutil.which("uv")
    if found:
        return [found]
    for python in (sys.executable, shutil.which("python3") or "python3"):
        probe = subprocess.run([python, "-m", "uv", "--version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [python, "-m", "uv"]
    sys.exit("bench.startup needs uv to build the baseline: pip install uv")


def compile_bytecode(python: str, *paths: Path) -> None:
    """Compile every module under ``paths`` (what pip does at install; uv does not)."""
    subprocess.run(
        [python, "-m", "compileall", "-q", "-j", "0", *map(str, paths)],
        check=False,  # a test data file that is not valid Python is no reason to stop
        stdout=subprocess.DEVNULL,
    )


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def build(revision: str) -> Path:
    """The ``bin`` directory of a virtual environment holding ``revision``."""
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", f"{revision}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    tree = Path(f"/var/tmp/secretinit-bench-baseline-{commit}/tree")
    venv = tree / ".venv"
    if not (venv / "bin" / "secretinit").exists():
        shutil.rmtree(tree, ignore_errors=True)
        tree.mkdir(parents=True)
        archive = subprocess.Popen(
            ["git", "-C", str(ROOT), "archive", commit], stdout=subprocess.PIPE
        )
        subprocess.run(["tar", "-x", "-C", str(tree)], stdin=archive.stdout, check=True)
        if archive.wait() != 0:
            sys.exit(f"git archive {commit} failed")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV"))}
        subprocess.run(
            [*uv(), "sync", "--frozen", "--all-packages", "--no-dev", "--quiet"],
            cwd=tree,
            env=env,
            check=True,
        )
    python = str(venv / "bin" / "python")
    compile_bytecode(python, tree / "secretinit", tree / "providers", site_packages(venv))
    return venv / "bin"


def prepare_current() -> Path:
    """The ``bin`` directory of this checkout's environment, compiled to bytecode."""
    venv = Path(sys.prefix)
    compile_bytecode(sys.executable, ROOT / "secretinit", ROOT / "providers", site_packages(venv))
    return venv / "bin"
