"""The project's image, built from its Dockerfile and run with podman, checked from outside.

Each test runs once for the core alone and once with every provider of the
checkout installed. The application is ``programs/app.py``, mounted read-only
at /tier; the planted secrets come from an env-file mounted at /tier-secrets.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import assert_no_leak
from tests.container.checks import (
    LOAD_ENTRY_POINTS,
    SECRET_DIR,
    app_report,
    declare,
    expected_providers,
    ids,
    listed_providers,
    mounts,
    process_status,
    stop_in_time,
)
from tests.container.podman import (
    APP_UID,
    RECORDS,
    Container,
    Image,
    Podman,
)
from tests.container.podman import start as start_container

pytestmark = pytest.mark.container

APP = ["python3", "/tier/app.py"]


@pytest.fixture(scope="session")
def running(
    podman: Podman, image: Image, secrets_dir: Path, planted: dict[str, str]
) -> Iterator[Container]:
    """The image as a user would run it: non-root, a tmpfs at /run/secretinit, two secrets."""
    container = start_container(
        podman,
        *mounts(secrets_dir),
        # podman's U makes the tmpfs the container user's (docker: uid=10001,gid=10001).
        "--tmpfs",
        f"{SECRET_DIR}:U,mode=0700",
        *declare(planted),
        image.id,
        *APP,
    )
    try:
        container.wait_for("APP-REPORT")
        yield container
    finally:
        container.remove()


def test_pid1_is_secretinit(running: Container) -> None:
    argv = running.read("/proc/1/cmdline").split("\0")
    assert argv[1:4] == ["-I", "-S", "-B"], argv
    assert argv[4].endswith("/secretinit/_supervisor.py"), argv
    assert argv[argv.index("--") + 1 :][:2] == APP[:2]
    # Non-root from the start: nothing of secretinit's ever ran as root.
    assert ids(process_status(running, 1), "Uid") == {APP_UID}


def test_application_runs_as_non_root_child_of_pid1(running: Container) -> None:
    report = app_report(running.logs())
    assert (report["uid"], report["gid"], report["ppid"]) == (APP_UID, APP_UID, 1)
    status = process_status(running, report["pid"])  # seen from outside as well
    assert ids(status, "Uid") == {APP_UID}
    assert ids(status, "Gid") == {APP_UID}
    assert status["PPid"].strip() == "1"


def test_secret_files_private_on_tmpfs(running: Container, planted: dict[str, str]) -> None:
    assert running.exec("stat", "-f", "-c", "%T", SECRET_DIR).stdout.strip() == "tmpfs"
    listing = running.exec(
        "stat", "-L", "-c", "%n %a %u %g", SECRET_DIR, *(f"{SECRET_DIR}/{name}" for name in planted)
    )
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0] == f"{SECRET_DIR} 700 {APP_UID} {APP_UID}"
    assert lines[1:] == [f"{SECRET_DIR}/{name} 400 {APP_UID} {APP_UID}" for name in planted]
    for name, value in planted.items():
        assert running.read(f"{SECRET_DIR}/{name}") == value
        denied = running.exec("cat", f"{SECRET_DIR}/{name}", user="65534:65534")
        assert denied.returncode != 0
        assert "Permission denied" in denied.stderr


def test_file_variables_set_and_values_absent(running: Container, planted: dict[str, str]) -> None:
    report = app_report(running.logs())
    environ = running.read(f"/proc/{report['pid']}/environ").split("\0")
    for name in planted:
        assert f"{name}_FILE={SECRET_DIR}/{name}" in environ
        assert not any(entry.startswith(f"{name}=") for entry in environ)
    assert_no_leak(planted.values(), "\0".join(environ))


def test_logs_hold_no_value(running: Container, planted: dict[str, str]) -> None:
    logs = running.logs()
    assert f"resolved {len(planted)} secrets to {SECRET_DIR}" in logs
    assert_no_leak(planted.values(), logs)


def test_without_a_tmpfs_mount_files_go_to_private_shm(
    podman: Podman,
    image: Image,
    secrets_dir: Path,
    planted: dict[str, str],
    containers: list[Container],
) -> None:
    container = start_container(podman, *mounts(secrets_dir), *declare(planted), image.id, *APP)
    containers.append(container)
    report = app_report(container.wait_for("APP-REPORT"))
    paths = [report["file_variables"][f"{name}_FILE"] for name in planted]
    directory = str(Path(paths[0]).parent)
    assert directory.startswith("/dev/shm/secretinit-")
    assert container.exec("stat", "-f", "-c", "%T", directory).stdout.strip() == "tmpfs"
    modes = container.exec("stat", "-L", "-c", "%a %u", directory, *paths).stdout.split("\n")
    assert modes[:3] == [f"700 {APP_UID}", f"400 {APP_UID}", f"400 {APP_UID}"]


def test_stop_forwards_sigterm_and_keeps_the_application_status(
    podman: Podman,
    image: Image,
    secrets_dir: Path,
    planted: dict[str, str],
    containers: list[Container],
) -> None:
    container = start_container(podman, *mounts(secrets_dir), *declare(planted), image.id, *APP)
    containers.append(container)
    container.wait_for("APP-REPORT")
    RECORDS.setdefault(image.name, {})["stop_seconds"] = round(stop_in_time(container), 2)


def test_missing_required_secret_stops_before_the_application(
    podman: Podman,
    image: Image,
    secrets_dir: Path,
    planted: dict[str, str],
    containers: list[Container],
) -> None:
    container = start_container(
        podman,
        *mounts(secrets_dir),
        *declare(planted),
        "--env",
        "SIGNING_KEY=docker-secret://signing_key",
        image.id,
        *APP,
    )
    containers.append(container)
    deadline = time.monotonic() + 60
    while container.running() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert container.exit_code() == 69  # EX_UNAVAILABLE: a required secret could not be fetched
    logs = container.logs()
    assert "APP-STARTED" not in logs
    assert "SIGNING_KEY" in logs
    assert "docker-secret://signing_key" in logs
    assert "no docker secret 'signing_key' in /run/secrets" in logs
    assert_no_leak(planted.values(), logs)


def test_installed_providers(podman: Podman, image: Image) -> None:
    listing = podman("run", "--rm", "--network", "none", image.id, "secretinit", "providers")
    expected = expected_providers(image.providers)
    assert listed_providers(listing.stdout) == expected
    # Every installed provider imports, SDK included, in secretinit's own Python.
    load = podman(
        "run",
        "--rm",
        "--network",
        "none",
        image.id,
        "/opt/secretinit/bin/python3",
        "-c",
        LOAD_ENTRY_POINTS,
    )
    assert sorted(load.stdout.split()) == sorted(expected)


def test_only_the_command_is_exposed(podman: Podman, image: Image) -> None:
    """An image built FROM this one keeps its own python: the venv is not on PATH."""
    done = podman(
        "run",
        "--rm",
        "--network",
        "none",
        image.id,
        "sh",
        "-c",
        'echo "$PATH"; command -v secretinit; readlink "$(command -v secretinit)"; '
        'command -v python3; env | grep "^PYTHON" || true',
    )
    path, command, target, python, *python_variables = done.stdout.splitlines()
    assert "/opt/secretinit" not in path
    assert (command, target) == ("/usr/local/bin/secretinit", "/opt/secretinit/bin/secretinit")
    assert python == "/usr/bin/python3"  # the base's, not /opt/secretinit/bin/python3
    assert python_variables == []
    # The application's PYTHON* variables are for its Python, not secretinit's.
    done = podman(
        "run",
        "--rm",
        "--network",
        "none",
        "--env",
        "PYTHONHOME=/nowhere",
        "--env",
        "PYTHONPATH=/nowhere",
        image.id,
        "sh",
        "-c",
        'echo "$PYTHONHOME"',
    )
    assert done.stdout.strip() == "/nowhere"


def test_record_startup_time_inside_the_container(
    podman: Podman, image: Image, secrets_dir: Path
) -> None:
    """Not a speed assertion: it records the medians that the run summary shows."""
    done = podman(
        "run",
        "--rm",
        *mounts(secrets_dir),
        image.id,
        "python3",
        "/tier/startup.py",
        "--rounds",
        "7",
        timeout=300,
    )
    medians = json.loads(done.stdout.strip().splitlines()[-1])["medians_ms"]
    assert set(medians) == {
        "python -I -c pass",
        "secretinit run -- true",
        "secretinit run (2 secrets) -- true",
    }
    RECORDS.setdefault(image.name, {})["startup_ms"] = medians
