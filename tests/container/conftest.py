"""Fixtures of the container tier: podman, the local base image, the images under test.

The tier is marked ``container`` and left out of the default run; run it with
``uv run pytest -m container tests/container``. A missing tool that cannot be
installed fails every test of the tier: it never skips.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.container.podman import (
    RECORDS,
    BuildFailed,
    Container,
    Image,
    Podman,
    TierUnavailable,
    install_tools,
    provider_sets,
    state_directory,
)

PROVIDER_SETS = provider_sets()


@pytest.fixture(scope="session")
def podman() -> Podman:
    """podman installed and configured, its state under the tier's directory."""
    try:
        install_tools()
    except TierUnavailable as err:
        pytest.fail(str(err))
    tier = Podman()
    tier.prune()
    return tier


@pytest.fixture(scope="session")
def base_image(podman: Podman) -> str:
    """The local Debian base with Python; made once per machine (about a minute)."""
    try:
        return podman.base_image()
    except TierUnavailable as err:
        pytest.fail(str(err))


class Images:
    """Builds the project's Dockerfile once per provider set and session."""

    def __init__(self, podman: Podman, base: str) -> None:
        self.podman = podman
        self.base = base
        self.built: dict[str, Image] = {}
        self.any_images: dict[str, Image] = {}
        self._no_python_base: str | None = None

    @property
    def no_python_base(self) -> str:
        """The base without Python that examples/any-image is built on."""
        if self._no_python_base is None:
            try:
                self._no_python_base = self.podman.no_python_base(self.base)
            except BuildFailed as err:
                pytest.fail(str(err))
        return self._no_python_base

    def any_image(self, name: str) -> Image:
        """examples/any-image: the bundle of ``name``'s providers in an image without Python."""
        if name not in self.any_images:
            try:
                bundle = self.podman.build_secretinit(
                    name, PROVIDER_SETS[name], self.base, bundle=True
                )
                image = self.podman.build_any_image(bundle, self.no_python_base)
            except BuildFailed as err:
                pytest.fail(str(err))
            self.any_images[name] = image
            RECORDS.setdefault(f"bundle {name}", {}).update(
                providers=list(image.providers),
                bundle_mb=round(bundle.size / 1e6, 1),
                any_image_over_base_mb=round(
                    (image.size - self.podman.image_size(self.no_python_base)) / 1e6, 1
                ),
            )
        return self.any_images[name]

    def get(self, name: str) -> Image:
        if name not in self.built:
            try:
                image = self.podman.build_secretinit(name, PROVIDER_SETS[name], self.base)
            except BuildFailed as err:
                pytest.fail(str(err))
            self.built[name] = image
            base_size = self.podman.image_size(self.base)
            RECORDS.setdefault(name, {}).update(
                providers=list(image.providers),
                size_mb=round(image.size / 1e6, 1),
                over_base_mb=round((image.size - base_size) / 1e6, 1),
            )
        return self.built[name]


@pytest.fixture(scope="session")
def images(podman: Podman, base_image: str) -> Images:
    """The image builder of this session."""
    return Images(podman, base_image)


@pytest.fixture(scope="session", params=list(PROVIDER_SETS))
def image(request: pytest.FixtureRequest, images: Images) -> Image:
    """The project's image, once for the core alone and once with every provider present."""
    return images.get(request.param)


@pytest.fixture(scope="session", params=list(PROVIDER_SETS))
def any_image(request: pytest.FixtureRequest, images: Images) -> Image:
    """examples/any-image (no Python) with the bundle, for the core alone and every provider."""
    return images.any_image(request.param)


@pytest.fixture(scope="session")
def core_image(images: Images) -> Image:
    """The project's image with the core alone."""
    return images.get("core")


@pytest.fixture(scope="session")
def planted() -> dict[str, str]:
    """Distinctive secret values; no test output may contain them."""
    return {
        "DB_PASSWORD": f"tier-db-{secrets.token_hex(8)}",
        "API_TOKEN": f"tier-token {secrets.token_hex(8)} with $pace",
    }


@pytest.fixture(scope="session")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory, planted: dict[str, str]) -> Path:
    """A directory with ``app.env`` holding the planted values, readable by the image's user."""
    directory = tmp_path_factory.mktemp("tier-secrets")
    env_file = directory / "app.env"
    env_file.write_text("".join(f"{k}='{v}'\n" for k, v in planted.items()))
    directory.chmod(0o755)
    env_file.chmod(0o644)
    return directory


@pytest.fixture
def containers(podman: Podman) -> Iterator[list[Container]]:
    """Containers a test started; every one is removed after it."""
    started: list[Container] = []
    yield started
    for container in started:
        container.remove()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Show what the tier measured: image sizes and start-up time inside the container."""
    if not RECORDS:
        return
    terminalreporter.section("container tier: images")
    for name, record in RECORDS.items():
        terminalreporter.write_line(f"{name}: {json.dumps(record, sort_keys=True)}")
    try:
        (state_directory() / "records.json").write_text(
            json.dumps({"time": time.time(), "images": RECORDS}, indent=2, sort_keys=True)
        )
    except OSError:
        pass
