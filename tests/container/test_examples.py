"""The deployments in examples/, run for real: the application image and the Swarm stack.

Both start from the core image: the development flow resolves every secret
from a .env file, and the Swarm stack only uses the built-in docker-secret
provider.
"""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from dotenv import dotenv_values

from conftest import assert_no_leak
from tests.container.checks import wait_for_exit
from tests.container.compose import SECRETS_DIR, service_run
from tests.container.podman import APP_UID, PROGRAMS, ROOT, Container, Image, Podman
from tests.container.podman import start as start_container

if TYPE_CHECKING:
    from tests.container.conftest import Images

pytestmark = pytest.mark.container

EXAMPLES = ROOT / "examples"
STACK = EXAMPLES / "swarm" / "docker-compose.yml"
SECRET_DIR = "/run/secretinit"


@pytest.fixture(scope="session")
def example_image(podman: Podman, core_image: Image) -> str:
    """examples/image/Dockerfile built on the core image, with examples/ as the context."""
    return podman.build(
        "localhost/secretinit-tier-example:latest",
        EXAMPLES,
        dockerfile=EXAMPLES / "image" / "Dockerfile",
        build_args={"BASE_IMAGE": core_image.id},
    )


def dev_values() -> list[str]:
    return [v for v in dotenv_values(EXAMPLES / "dev.env").values() if v]


@pytest.fixture(params=["image", "any-image"])
def example(request: pytest.FixtureRequest, images: Images) -> str:
    """examples/image (on the Python image) or examples/any-image (the bundle, no Python)."""
    if request.param == "image":
        return str(request.getfixturevalue("example_image"))
    return images.any_image("core").id


def test_example_image_development_flow(
    podman: Podman, example: str, containers: list[Container]
) -> None:
    """The production image on a laptop: SECRETINIT_ENV_FILE instead of vault and AWS."""
    container = start_container(
        podman,
        "--network",
        "none",
        "--volume",
        f"{EXAMPLES / 'dev.env'}:/app/dev.env:ro",
        "--env",
        "SECRETINIT_ENV_FILE=/app/dev.env",
        example,
    )
    containers.append(container)
    assert wait_for_exit(container) == 0
    logs = container.logs()
    assert f"running as uid {APP_UID} gid {APP_UID}," in logs
    directory = re.search(r"DB_PASSWORD_FILE=(/dev/shm/secretinit-\w+)/DB_PASSWORD", logs)
    assert directory is not None, logs
    assert f"mode 0400, owner uid {APP_UID}" in logs
    assert "API_TOKEN_FILE=" in logs
    assert "DATABASE_URL is in the environment" in logs  # export = "value" in the config
    assert f"secret directory {directory.group(1)}: mode 0700" in logs
    assert "tls.key: mode 0400" in logs
    assert_no_leak(dev_values(), logs)


def test_example_image_without_its_providers_says_what_to_install(
    podman: Podman, example: str, containers: list[Container]
) -> None:
    """On the core image the production declaration cannot start, and says why."""
    container = start_container(podman, "--network", "none", example)
    containers.append(container)
    assert wait_for_exit(container) == 78  # a bad declaration (EX_CONFIG)
    logs = container.logs()
    assert "example app" not in logs
    assert "secretinit-vault" in logs


@pytest.fixture
def swarm_secrets() -> dict[str, bytes]:
    """Values for the stack's external secrets, as `docker secret create` would hold them."""
    return {
        "app_db_password": f"swarm-db-{secrets.token_hex(8)}".encode(),
        "app_api_token": f"swarm-token-{secrets.token_hex(8)}".encode(),
        "app_tls_key": f"-----BEGIN KEY-----\nswarm-{secrets.token_hex(8)}\n".encode(),
    }


@pytest.fixture
def swarm_service(
    podman: Podman,
    example_image: str,
    swarm_secrets: dict[str, bytes],
    tmp_path: Path,
) -> tuple[list[str], int]:
    """The stack's `app` service as podman options, and its stop timeout."""
    run = service_run(STACK, "app", swarm_secrets, tmp_path)
    assert set(run.secret_files) == set(swarm_secrets)
    return ["--network", "none", *run.options], run.stop_timeout


def test_swarm_stack_runs_the_example_application(
    podman: Podman,
    example_image: str,
    swarm_service: tuple[list[str], int],
    swarm_secrets: dict[str, bytes],
    containers: list[Container],
) -> None:
    options, _ = swarm_service
    container = start_container(podman, *options, example_image)
    containers.append(container)
    assert wait_for_exit(container) == 0
    logs = container.logs()
    assert f"running as uid {APP_UID} gid {APP_UID}" in logs
    for name in ("DB_PASSWORD", "API_TOKEN", "DATABASE_URL"):
        assert f"{name}_FILE={SECRET_DIR}/{name}: mode 0400, owner uid {APP_UID}" in logs
    assert f"secret directory {SECRET_DIR}: mode 0700" in logs
    assert "tls.key: mode 0400" in logs
    assert "resolved 4 secrets to /run/secretinit (docker-secret: 3)" in logs
    assert_no_leak(swarm_secrets.values(), logs)


def test_swarm_stack_drops_root_and_hides_the_swarm_secrets(
    podman: Podman,
    example_image: str,
    swarm_service: tuple[list[str], int],
    swarm_secrets: dict[str, bytes],
    containers: list[Container],
) -> None:
    """Started as root (the stack's user: "0:0"), nothing of it keeps root once files exist."""
    options, stop_timeout = swarm_service
    container = start_container(
        podman,
        *options,
        "--volume",
        f"{PROGRAMS}:/tier:ro",
        example_image,
        "python3",
        "/tier/app.py",
    )
    containers.append(container)
    container.wait_for("APP-REPORT")
    status = container.read("/proc/1/status", user="0")
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert set(uid_line.split()[1:]) == {str(APP_UID)}, "PID 1 kept root"
    assert "secretinit/_supervisor.py" in container.read("/proc/1/cmdline", user="0")
    assert container.exec("stat", "-f", "-c", "%T", SECRET_DIR).stdout.strip() == "tmpfs"
    listing = container.exec("stat", "-L", "-c", "%a %u", SECRET_DIR, f"{SECRET_DIR}/tls.key")
    assert listing.stdout.split("\n")[:2] == [f"700 {APP_UID}", f"400 {APP_UID}"]
    assert (
        container.read(f"{SECRET_DIR}/tls.key", user=str(APP_UID)).encode()
        == (swarm_secrets["app_tls_key"])
    )
    expected_url = f"postgres://app:{swarm_secrets['app_db_password'].decode()}@db:5432/app"
    assert container.read(f"{SECRET_DIR}/DATABASE_URL", user=str(APP_UID)) == expected_url
    # The application's user cannot read what Swarm mounted: only its own copies.
    denied = container.exec("cat", f"{SECRETS_DIR}/db_password", user=str(APP_UID))
    assert denied.returncode != 0
    assert "Permission denied" in denied.stderr
    started = time.monotonic()
    podman("stop", "--time", str(stop_timeout), container.name, timeout=stop_timeout + 30)
    assert container.exit_code() == 42
    assert time.monotonic() - started < stop_timeout / 2
    assert_no_leak(swarm_secrets.values(), container.logs())
