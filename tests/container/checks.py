"""What every image of the tier is checked with, from outside the container.

Shared by the Python image's tests (test_image.py), the bundle's in an image
without Python (test_bundle.py) and the hardened profiles run on both
(test_hardened.py).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.container.podman import PROGRAMS, Container, provider_schemes

SECRET_DIR = "/run/secretinit"
STOP_TIMEOUT = 60  # podman stop's own limit before SIGKILL
EXIT_ON_SIGTERM = 42  # the tier's applications exit with it on SIGTERM, and only then


def declare(planted: dict[str, str]) -> list[str]:
    """``--env NAME=env-file:///tier-secrets/app.env#NAME`` for every planted secret."""
    options = []
    for name in planted:
        options += ["--env", f"{name}=env-file:///tier-secrets/app.env#{name}"]
    return options


def mounts(secrets_dir: Path, network: str = "none") -> list[str]:
    """The tier's programs at /tier and the planted env-file's directory at /tier-secrets."""
    return [
        "--network",
        network,
        "--volume",
        f"{PROGRAMS}:/tier:ro",
        "--volume",
        f"{secrets_dir}:/tier-secrets:ro",
    ]


def app_report(logs: str) -> dict[str, Any]:
    """The ``APP-REPORT`` JSON of the tier's application (programs/app.py or app.sh)."""
    line = next(line for line in logs.splitlines() if line.startswith("APP-REPORT "))
    report: dict[str, Any] = json.loads(line.removeprefix("APP-REPORT "))
    return report


def process_status(container: Container, pid: int) -> dict[str, str]:
    """``/proc/PID/status`` of a process in the container, as a dict."""
    text = container.read(f"/proc/{pid}/status")
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def ids(status: dict[str, str], field: str) -> set[int]:
    """The ids of a ``Uid:`` or ``Gid:`` line (real, effective, saved, filesystem)."""
    return {int(n) for n in status[field].split()}


def wait_for_exit(container: Container, timeout: float = 60) -> int:
    """Its exit status, once it has exited (fails the test after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while container.running():
        assert time.monotonic() < deadline, f"{container.name} still runs after {timeout} s"
        time.sleep(0.2)
    return container.exit_code()


def stop_in_time(container: Container) -> float:
    """``podman stop`` it; assert the application's own status, far from SIGKILL; seconds."""
    started = time.monotonic()
    container.podman("stop", "--time", str(STOP_TIMEOUT), container.name, timeout=STOP_TIMEOUT + 30)
    elapsed = time.monotonic() - started
    # The application's own status: not 137 (SIGKILL at the timeout), not 143.
    assert container.exit_code() == EXIT_ON_SIGTERM
    logs = container.logs()
    assert "APP-SIGTERM" in logs
    assert f"exited (status {EXIT_ON_SIGTERM})" in logs
    # Far from the timeout: the SIGTERM reached the application at once.
    assert elapsed < STOP_TIMEOUT / 2, f"podman stop took {elapsed:.1f} s"
    return elapsed


def private_files(container: Container, directory: str, names: list[str], uid: int) -> None:
    """``directory`` is a tmpfs, 0700, and each file 0400 (behind its link), owned by ``uid``.

    Looked at as ``uid``: root without DAC_OVERRIDE could not (--cap-drop ALL).
    """
    user = str(uid)
    assert container.exec("stat", "-f", "-c", "%T", directory, user=user).stdout == "tmpfs\n"
    listing = container.exec(
        "stat",
        "-L",
        "-c",
        "%n %a %u",
        directory,
        *(f"{directory}/{name}" for name in names),
        user=user,
    )
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0] == f"{directory} 700 {uid}"
    assert lines[1:] == [f"{directory}/{name} 400 {uid}" for name in names]


# Imports every installed provider's entry point, SDK included; prints its scheme.
LOAD_ENTRY_POINTS = (
    "from importlib.metadata import entry_points\n"
    "for e in entry_points(group='secretinit.providers'): e.load(); print(e.name)"
)


def expected_providers(providers: tuple[str, ...]) -> dict[str, str]:
    """Scheme -> distribution that ``secretinit providers`` lists for an image with these."""
    expected = {"env-file": "secretinit", "docker-secret": "secretinit"}
    for name in providers:
        expected.update(dict.fromkeys(provider_schemes(name), f"secretinit-{name}"))
    return expected


def listed_providers(listing: str) -> dict[str, str]:
    """Scheme -> distribution of the installed lines of ``secretinit providers``."""
    return {
        line.split()[0]: line.split()[1]
        for line in listing.splitlines()
        if "not installed" not in line
    }
