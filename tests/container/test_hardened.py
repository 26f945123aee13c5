"""Both images under the hardened profiles: a read-only root, no capabilities, no new privileges.

- Docker's ``--read-only`` (``--read-only-tmpfs=false`` in podman: /run and
  /tmp read-only, /dev/shm a writable tmpfs), ``--cap-drop ALL``,
  ``--security-opt no-new-privileges``, as the image's non-root user: what
  Kubernetes' "restricted" profile runs.
- The same started as root dropping to the user (``SECRETINIT_USER``) with
  only the capabilities the README documents (SETUID, SETGID, CHOWN), into a
  tmpfs that another uid owns.

Each checks the start, the files and the stop, on the Python image and on
the bundle in an image without Python (the core's of both).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from conftest import assert_no_leak
from tests.container.checks import (
    SECRET_DIR,
    app_report,
    declare,
    ids,
    mounts,
    private_files,
    process_status,
    stop_in_time,
)
from tests.container.podman import APP_UID, Container, Podman
from tests.container.podman import start as start_container

if TYPE_CHECKING:  # the session's image builder lives in the tier's conftest
    from tests.container.conftest import Images

pytestmark = pytest.mark.container

STRANGER = 4242
HARDENED = (
    "--read-only",
    "--read-only-tmpfs=false",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
)
DOCUMENTED_CAPABILITIES = ("SETUID", "SETGID", "CHOWN")  # README, "Hardened runtimes"


@dataclass(frozen=True)
class Kind:
    """One image to run hardened: how to get it, its application, extra options."""

    image: Callable[[Images], str]
    app: tuple[str, ...]
    options: tuple[str, ...] = ()


KINDS = {
    "python image": Kind(lambda images: images.get("core").id, ("python3", "/tier/app.py")),
    "bundle, no python": Kind(
        lambda images: images.any_image("core").id,
        ("/tier/app.sh",),
        ("--env", "SECRETINIT_CONFIG="),  # not the example's production declaration
    ),
}


@pytest.fixture(params=list(KINDS))
def kind(request: pytest.FixtureRequest, images: Images) -> tuple[str, Kind]:
    """The image's ID and how to run it."""
    chosen = KINDS[request.param]
    return chosen.image(images), chosen


def test_read_only_non_root_without_capabilities(
    podman: Podman,
    kind: tuple[str, Kind],
    secrets_dir: Path,
    planted: dict[str, str],
    containers: list[Container],
) -> None:
    image, how = kind
    container = start_container(
        podman, *mounts(secrets_dir), *HARDENED, *how.options, *declare(planted), image, *how.app
    )
    containers.append(container)
    report = app_report(container.wait_for("APP-REPORT"))
    assert (report["uid"], report["ppid"]) == (APP_UID, 1)
    status = process_status(container, 1)
    assert ids(status, "Uid") == {APP_UID}
    assert int(status["CapEff"], 16) == 0
    assert status["NoNewPrivs"].strip() == "1"
    files = [report["file_variables"][f"{name}_FILE"] for name in planted]
    directory = str(Path(files[0]).parent)
    assert directory.startswith("/dev/shm/secretinit-")
    private_files(container, directory, list(planted), APP_UID)
    logs = container.logs()
    assert "internal error" not in logs
    assert_no_leak(planted.values(), logs)
    stop_in_time(container)


@pytest.fixture
def strangers_tmpfs() -> Iterator[Path]:
    """A 0700 directory on the host's /dev/shm (a tmpfs) owned by another uid."""
    path = Path(tempfile.mkdtemp(prefix="secretinit-tier-", dir="/dev/shm"))
    os.chown(path, STRANGER, STRANGER)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_root_start_with_the_documented_capabilities(
    podman: Podman,
    kind: tuple[str, Kind],
    secrets_dir: Path,
    planted: dict[str, str],
    containers: list[Container],
    strangers_tmpfs: Path,
) -> None:
    image, how = kind
    capabilities = [option for cap in DOCUMENTED_CAPABILITIES for option in ("--cap-add", cap)]
    container = start_container(
        podman,
        *mounts(secrets_dir),
        *HARDENED,
        *capabilities,
        "--user",
        "0:0",
        "--env",
        f"SECRETINIT_USER={APP_UID}",
        # A tmpfs directory of someone else's: root must take it without
        # DAC_OVERRIDE or FOWNER (podman's --tmpfs takes no uid= option).
        "--volume",
        f"{strangers_tmpfs}:{SECRET_DIR}",
        *how.options,
        *declare(planted),
        image,
        *how.app,
    )
    containers.append(container)
    report = app_report(container.wait_for("APP-REPORT"))
    assert (report["uid"], report["gid"], report["ppid"]) == (APP_UID, APP_UID, 1)
    status = process_status(container, 1)
    assert ids(status, "Uid") == {APP_UID}, "the supervisor kept root"
    assert int(status["CapEff"], 16) == 0
    private_files(container, SECRET_DIR, list(planted), APP_UID)
    for name, value in planted.items():
        assert container.read(f"{SECRET_DIR}/{name}", user=str(APP_UID)) == value
    assert_no_leak(planted.values(), container.logs())
    stop_in_time(container)


def test_a_missing_capability_is_named(
    podman: Podman, kind: tuple[str, Kind], secrets_dir: Path, planted: dict[str, str]
) -> None:
    image, how = kind
    done = podman(
        "run",
        "--rm",
        *mounts(secrets_dir),
        *HARDENED,
        "--cap-add",
        "SETGID",
        "--cap-add",
        "CHOWN",
        "--user",
        "0:0",
        "--env",
        f"SECRETINIT_USER={APP_UID}",
        *how.options,
        *declare(planted),
        image,
        *how.app,
        check=False,
    )
    assert done.returncode == 2
    assert "APP-STARTED" not in done.stdout
    assert "without the SETUID capability" in done.stderr
    assert_no_leak(planted.values(), done.stdout, done.stderr)
