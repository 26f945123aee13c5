"""Fixtures of the core's tests."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

NOBODY = 65534
TESTS = Path(__file__).resolve().parent


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every user may write, for tests that drop privileges."""
    path = Path(tempfile.mkdtemp(prefix="secretinit-test-"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def unprivileged() -> Iterator[None]:
    """Run the test body with the effective ids of ``nobody`` when root.

    Root reads every file whatever its mode, so "permission denied" can only
    be exercised without it; the saved set-user-ID stays 0, which lets the
    fixture take root back afterwards.
    """
    if os.geteuid() != 0:
        yield
        return
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
