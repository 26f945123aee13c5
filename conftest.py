"""Fixtures shared by the core's tests and every provider's tests.

Kept at the root so that ``tests/`` and ``providers/*/tests/`` both see them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
PROCESS_TIMEOUT = 60
REQUIRE_ROOT_VARIABLE = "SECRETINIT_TESTS_REQUIRE_ROOT"


def secretinit_executable() -> str:
    """The ``secretinit`` console script of the environment running the tests."""
    candidate = Path(sys.executable).with_name("secretinit")
    if not candidate.exists():
        raise RuntimeError(f"{candidate} is missing: install the project (uv sync) first")
    return str(candidate)


def run_secretinit(
    args: Iterable[str],
    env: Mapping[str, str] | None = None,
    *,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = PROCESS_TIMEOUT,
    **kwargs: object,
) -> subprocess.CompletedProcess[str]:
    """Run the real ``secretinit`` as a subprocess and capture its output."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [secretinit_executable(), *args],
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,
    )


def assert_no_leak(values: Iterable[str | bytes], *outputs: str | bytes) -> None:
    """Fail if any planted secret value appears in any captured output."""
    for value in values:
        needle = value.encode() if isinstance(value, str) else value
        for output in outputs:
            haystack = output.encode() if isinstance(output, str) else output
            assert needle not in haystack, "a planted secret value appeared in the output"


@pytest.fixture
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HOME in a temporary directory: SDKs read ~/.vault-token, ~/.aws, ~/.azure."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
def secrets_dir() -> Iterator[Path]:
    """A secret directory (not yet made) on a tmpfs, as in production."""
    parent = Path(tempfile.mkdtemp(prefix="secretinit-test-", dir="/dev/shm"))
    try:
        yield parent / "secrets"
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def refresh_log(tmp_path: Path) -> Iterator[object]:
    """A file for the log of a long-running secretinit (a ``tests.refreshing.LogFile``)."""
    from tests.refreshing import LogFile

    log = LogFile(tmp_path / "secretinit.log")
    try:
        yield log
    finally:
        log.close()


@pytest.fixture
def require_root() -> None:
    """Skip without root, or fail when the run demands root (CI sets the variable)."""
    _require_root()


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked ``root`` (also usable on a parameter) need root like ``require_root``."""
    if item.get_closest_marker("root") is not None:
        _require_root()


def _require_root() -> None:
    if os.geteuid() == 0:
        return
    message = "needs root (unshare, chown, --user)"
    if os.environ.get(REQUIRE_ROOT_VARIABLE) == "1":
        pytest.fail(f"{message}, and {REQUIRE_ROOT_VARIABLE}=1 requires it")
    pytest.skip(message)
