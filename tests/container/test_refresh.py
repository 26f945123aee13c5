"""``--refresh`` in the project's image: non-root from the start, the files on a tmpfs.

Here the refresh runs are the image's user's, with the image's Python (on
the test machine the interpreter may be out of reach of another user).
The application is ``tests/programs/secret_reader.py``, mounted read-only.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import assert_no_leak
from tests.container.podman import APP_UID, Container, Image, Podman
from tests.container.podman import start as start_container
from tests.refreshing import digest

pytestmark = pytest.mark.container

READER_PROGRAMS = Path(__file__).resolve().parent.parent / "programs"
SECRET_DIR = "/run/secretinit"


def test_a_changed_secret_reaches_the_application_and_status_says_ready(
    podman: Podman, core_image: Image, tmp_path: Path, containers: list[Container]
) -> None:
    store = tmp_path / "store"
    store.mkdir(mode=0o755)
    env_file = store / "app.env"
    env_file.write_text("A=tier-refresh-v1-1f2e\n")
    env_file.chmod(0o644)
    container = start_container(
        podman,
        "--network",
        "none",
        "--volume",
        f"{READER_PROGRAMS}:/refresh-programs:ro",
        "--volume",
        f"{store}:/store:ro",
        "--tmpfs",
        f"{SECRET_DIR}:U,mode=0700",
        "--env",
        "A=env-file:///store/app.env#A",
        "--env",
        "SECRETINIT_REFRESH=1",
        "--env",
        "SECRETINIT_ON_CHANGE=signal:HUP",
        core_image.id,
        "python3",
        "/refresh-programs/secret_reader.py",
        "A",
    )
    containers.append(container)
    container.wait_for(f"files A={digest('tier-refresh-v1-1f2e')}")
    with open(env_file, "r+") as stream:  # in place: the bind mount keeps the inode
        stream.truncate()
        stream.write("A=tier-refresh-v2-3a4b\n")
    logs = container.wait_for(f"files A={digest('tier-refresh-v2-3a4b')}")
    assert "SIGHUP" in logs
    assert "refreshed: A changed (1 of 1 secrets)" in logs
    probe = container.exec("secretinit", "status", "--dir", SECRET_DIR)
    assert probe.returncode == 0, probe.stdout + probe.stderr
    assert probe.stdout.startswith("ready: last success")
    owners = container.exec("stat", "-c", "%u %a", f"{SECRET_DIR}/..secretinit/health")
    assert owners.stdout.split() == [str(APP_UID), "600"]  # the refreshes ran as the user
    podman("stop", "--time", "20", container.name)
    assert container.exit_code() == 0
    assert_no_leak(["tier-refresh-v1-1f2e", "tier-refresh-v2-3a4b"], container.logs())
