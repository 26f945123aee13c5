"""The machinery of the container tier: podman, a local base image, builds of the Dockerfile.

No image registry can be reached from these machines and no Docker engine
runs on them, so the tier installs podman from Debian's packages, makes its
own Debian base image with ``debootstrap`` and builds the project's
``Dockerfile`` on it through the ``BASE_IMAGE`` build argument.

Everything podman keeps (image store, run state, its configuration files, the
base image's tarball) lives under one directory, ``STATE``:
``/var/tmp/secretinit-container-tier`` unless ``SECRETINIT_CONTAINER_STATE``
names another. It survives between runs on one machine, so the base image
(about a minute of debootstrap) and the build cache are made once.

Used by ``tests/container/conftest.py`` and by ``bench/image``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = Path(__file__).resolve().parent / "programs"

STATE_VARIABLE = "SECRETINIT_CONTAINER_STATE"
DEFAULT_STATE = Path("/var/tmp/secretinit-container-tier")
DRIVER_VARIABLE = "SECRETINIT_CONTAINER_DRIVER"  # overlay | vfs; default: overlay if it mounts
MIRROR_VARIABLE = "SECRETINIT_CONTAINER_MIRROR"

# What the tier needs from Debian, and the programs that show it is there.
# (objdump, from binutils, reads the glibc versions the bundle needs.)
DEBIAN_PACKAGES = ("podman", "runc", "debootstrap", "binutils")
REQUIRED_PROGRAMS = ("podman", "runc", "conmon", "debootstrap", "objdump")
APT_INSTALL = "apt-get install -y --no-install-recommends " + " ".join(DEBIAN_PACKAGES)

# The base image: Debian's Python with venv (what the Dockerfile's builder
# stage uses) and the CA bundle (pip reaches PyPI during the build).
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("python3-venv", "ca-certificates")
BASE_REPOSITORY = "localhost/secretinit-tier-base"
# Removed from the base's root file system: nothing in an image needs them,
# and every megabyte is copied again by each container on the vfs driver.
BASE_TRIM = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale")
BASE_EMPTY = ("var/cache/apt", "var/lib/apt/lists", "var/log")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
BASE_RECIPE_VERSION = 2  # bump when the recipe below changes in a way the key cannot see

IMAGE_REPOSITORY = "localhost/secretinit-tier"
BUNDLE_REPOSITORY = "localhost/secretinit-tier-bundle"
ANY_IMAGE_REPOSITORY = "localhost/secretinit-tier-any-image"
NO_PYTHON_DOCKERFILE = Path(__file__).resolve().parent / "no-python.Dockerfile"
NO_PYTHON_REPOSITORY = "localhost/secretinit-tier-base-no-python"
ANY_IMAGE_DOCKERFILE = ROOT / "examples" / "any-image" / "Dockerfile"
APP_UID = 10001  # the Dockerfile's APP_UID default

# What the tier measured (image sizes, start-up, stop time), by provider set:
# shown at the end of the run and kept in STATE/records.json.
RECORDS: dict[str, dict[str, Any]] = {}

BUILD_TIMEOUT = 1200.0
COMMAND_TIMEOUT = 120.0


class TierUnavailable(RuntimeError):
    """The tier cannot run here: a tool is missing and cannot be installed."""


class BuildFailed(RuntimeError):
    """``podman build`` failed; the message ends with the tail of its log."""


def state_directory() -> Path:
    """The one directory that holds all of the tier's state."""
    return Path(os.environ.get(STATE_VARIABLE) or DEFAULT_STATE)


def missing_programs() -> list[str]:
    """The programs of ``REQUIRED_PROGRAMS`` not found on PATH (conmon lives in /usr/libexec)."""
    missing = []
    for program in REQUIRED_PROGRAMS:
        if shutil.which(program) or Path("/usr/libexec/podman", program).exists():
            continue
        missing.append(program)
    return missing


def install_tools() -> None:
    """Install podman, runc and debootstrap from Debian's packages when one is missing."""
    missing = missing_programs()
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise TierUnavailable(
            f"the container tier needs {', '.join(missing)}: run `{APT_INSTALL}` as root"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    command = ["apt-get", "-o", "DPkg::Lock::Timeout=600", *APT_INSTALL.split()[1:]]
    installed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    if installed.returncode != 0:  # a stale package list: refresh it once and try again
        subprocess.run(
            ["apt-get", "-o", "DPkg::Lock::Timeout=600", "update"],
            env=env,
            capture_output=True,
            timeout=600,
            check=False,
        )
        installed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    missing = missing_programs()
    if installed.returncode != 0 or missing:
        raise TierUnavailable(
            f"`{APT_INSTALL}` failed (status {installed.returncode}); still missing: "
            f"{', '.join(missing) or 'nothing'}\n{installed.stderr[-2000:]}"
        )


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path``: two runs on one machine share the state directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def overlay_works(scratch: Path) -> bool:
    """Whether this kernel and sandbox let root mount overlayfs (much faster than vfs)."""
    probe = Path(tempfile.mkdtemp(prefix="overlay-probe-", dir=scratch))
    try:
        for name in ("lower", "upper", "work", "merged"):
            (probe / name).mkdir()
        options = f"lowerdir={probe}/lower,upperdir={probe}/upper,workdir={probe}/work"
        mounted = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", options, str(probe / "merged")],
            capture_output=True,
            timeout=30,
            check=False,
        )
        if mounted.returncode != 0:
            return False
        subprocess.run(["umount", str(probe / "merged")], capture_output=True, timeout=30)
        return True
    finally:
        shutil.rmtree(probe, ignore_errors=True)


@dataclass(frozen=True)
class Image:
    """A built image: what it was built with, its ID and its size."""

    name: str  # the provider set: "core", "all" or a provider's name
    providers: tuple[str, ...]
    id: str
    tag: str
    size: int  # bytes, as podman reports it
    build_seconds: float


class Podman:
    """podman with its whole state under ``state``: storage, run state, configuration."""

    def __init__(self, state: Path | None = None, driver: str | None = None) -> None:
        self.state = (state or state_directory()).resolve()
        self.state.mkdir(parents=True, exist_ok=True)
        self.logs = self.state / "logs"
        self.logs.mkdir(exist_ok=True)
        with locked(self.state / "configure.lock"):
            self.driver = driver or os.environ.get(DRIVER_VARIABLE) or self._choose_driver()
            self._configure()
        self.env = dict(os.environ)
        self.env.update(
            CONTAINERS_CONF=str(self.state / "containers.conf"),
            CONTAINERS_STORAGE_CONF=str(self.state / f"storage-{self.driver}.conf"),
            CONTAINERS_REGISTRIES_CONF=str(self.state / "registries.conf"),
            TMPDIR=str(self.state / "tmp"),
        )

    def _choose_driver(self) -> str:
        known = self.state / "driver"
        if known.exists():
            return known.read_text().strip()
        driver = "overlay" if overlay_works(self.state) else "vfs"
        known.write_text(driver + "\n")
        return driver

    def _configure(self) -> None:
        # crun (podman's default) fails on these machines' hybrid cgroups; the
        # sandbox refuses podman's default rlimits; no systemd runs here.
        (self.state / "tmp").mkdir(exist_ok=True)
        (self.state / "containers.conf").write_text(
            "[containers]\n"
            'default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n'
            "[engine]\n"
            'runtime = "runc"\n'
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{self.state}/events.log"\n'
            f'tmp_dir = "{self.state}/libpod-tmp"\n'
            f'volume_path = "{self.state}/volumes"\n'
            "[network]\n"
            f'network_config_dir = "{self.state}/networks"\n'
        )
        (self.state / f"storage-{self.driver}.conf").write_text(
            "[storage]\n"
            f'driver = "{self.driver}"\n'
            f'graphroot = "{self.state}/storage-{self.driver}"\n'
            f'runroot = "{self.state}/run-{self.driver}"\n'
        )
        # No registry is reachable: never look a short name up anywhere.
        (self.state / "registries.conf").write_text("unqualified-search-registries = []\n")

    def __call__(
        self,
        *args: str,
        timeout: float = COMMAND_TIMEOUT,
        check: bool = True,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``podman ARGS...`` and capture its output; raise on failure when ``check``."""
        done = subprocess.run(
            ["podman", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            check=False,
        )
        if check and done.returncode != 0:
            raise RuntimeError(
                f"podman {' '.join(args[:3])} ... exited {done.returncode}:\n"
                f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
            )
        return done

    def prune(self) -> None:
        """Drop untagged images over a day old: old build layers, kept from growing forever.

        Younger ones stay: they are the build cache of the next runs (and of a
        run going on beside this one)."""
        self("image", "prune", "--force", "--filter", "until=24h", check=False, timeout=600)

    def exists(self, image: str) -> bool:
        """Whether ``image`` is in the store."""
        return self("image", "exists", image, check=False).returncode == 0

    def image_size(self, image: str) -> int:
        """The image's size in bytes, as ``podman images`` shows it."""
        return int(self("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())

    # The base image -------------------------------------------------------

    def base_image(self) -> str:
        """A Debian base image with Python, made once per machine; its reference."""
        mirror = os.environ.get(MIRROR_VARIABLE) or DEFAULT_MIRROR
        ca_bundle = HOST_CA_BUNDLE.read_bytes() if HOST_CA_BUNDLE.exists() else b""
        recipe = json.dumps(
            [BASE_RECIPE_VERSION, SUITE, mirror, BASE_PACKAGES, BASE_TRIM, BASE_EMPTY]
        ).encode()
        key = hashlib.sha256(recipe + ca_bundle).hexdigest()[:12]
        reference = f"{BASE_REPOSITORY}:{key}"
        with locked(self.state / "base.lock"):
            if self.exists(reference):
                return reference
            tarball = self.state / "base" / f"{key}.tar"
            if not tarball.exists():
                self._debootstrap(tarball, mirror, ca_bundle)
            self(
                "import",
                "--change",
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--change",
                "ENV LANG=C.UTF-8",
                "--change",
                'CMD ["/bin/sh"]',
                str(tarball),
                reference,
                timeout=600,
            )
        return reference

    def _debootstrap(self, tarball: Path, mirror: str, ca_bundle: bytes) -> None:
        tarball.parent.mkdir(parents=True, exist_ok=True)
        rootfs = Path(tempfile.mkdtemp(prefix="rootfs-", dir=tarball.parent))
        log = self.logs / "debootstrap.log"
        try:
            with log.open("w") as output:
                done = subprocess.run(
                    [
                        "debootstrap",
                        "--variant=minbase",
                        f"--include={','.join(BASE_PACKAGES)}",
                        SUITE,
                        str(rootfs),
                        mirror,
                    ],
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    timeout=1200,
                    check=False,
                )
            if done.returncode != 0:
                raise TierUnavailable(
                    f"debootstrap failed (status {done.returncode}); see {log}:\n"
                    + log.read_text()[-2000:]
                )
            for relative in BASE_TRIM:
                shutil.rmtree(rootfs / relative, ignore_errors=True)
            for relative in BASE_EMPTY:
                for entry in (rootfs / relative).glob("*"):
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()
            if ca_bundle:
                # The host's bundle, so that pip in a RUN step trusts what the
                # host trusts (an egress proxy's CA, where there is one).
                (rootfs / "etc/ssl/certs/ca-certificates.crt").write_bytes(ca_bundle)
                (rootfs / "etc/pip.conf").write_text(
                    "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n"
                )
            # mkdtemp made it 0700, and the tarball's "." becomes the image's "/":
            # a non-root user could reach nothing (overlay hides it, vfs not).
            rootfs.chmod(0o755)
            partial = tarball.with_suffix(".tar.partial")
            subprocess.run(
                ["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."],
                check=True,
                capture_output=True,
                timeout=600,
            )
            partial.rename(tarball)
            for stale in tarball.parent.glob("*.tar"):  # made by an older recipe
                if stale != tarball:
                    stale.unlink()
        finally:
            shutil.rmtree(rootfs, ignore_errors=True)

    # Builds ----------------------------------------------------------------

    def build(
        self,
        tag: str,
        context: Path,
        *,
        dockerfile: Path | None = None,
        build_args: Mapping[str, str] | None = None,
        target: str | None = None,
    ) -> str:
        """``podman build --pull=never`` (of ``target``, a stage); the new image's ID."""
        log = self.logs / f"build-{tag.rsplit('/', 1)[-1].replace(':', '-')}.log"
        with tempfile.TemporaryDirectory(dir=self.state / "tmp") as scratch:
            iidfile = Path(scratch) / "iid"
            command = ["build", "--pull=never", "--layers", "--iidfile", str(iidfile), "-t", tag]
            if dockerfile is not None:
                command += ["--file", str(dockerfile)]
            if target is not None:
                command += ["--target", target]
            for name, value in (build_args or {}).items():
                command += ["--build-arg", f"{name}={value}"]
            done = self(*command, str(context), timeout=BUILD_TIMEOUT, check=False)
            log.write_text(done.stdout + done.stderr)
            if done.returncode != 0:
                raise BuildFailed(
                    f"podman build of {tag} failed (status {done.returncode}); log in {log}:\n"
                    + (done.stdout + done.stderr)[-4000:]
                )
            return iidfile.read_text().strip()

    def build_secretinit(
        self, name: str, providers: Sequence[str], base: str, *, bundle: bool = False
    ) -> Image:
        """The project's Dockerfile on ``base`` with ``providers`` installed.

        ``bundle``: its ``bundle`` target, an image holding /opt/secretinit alone.
        """
        tag = f"{BUNDLE_REPOSITORY if bundle else IMAGE_REPOSITORY}:{name}"
        started = time.monotonic()
        image_id = self.build(
            tag,
            ROOT,
            build_args={"BASE_IMAGE": base, "PROVIDERS": " ".join(providers)},
            target="bundle" if bundle else None,
        )
        elapsed = time.monotonic() - started
        return Image(name, tuple(providers), image_id, tag, self.image_size(image_id), elapsed)

    def no_python_base(self, base: str) -> str:
        """``base`` with every python3 package purged (no-python.Dockerfile); its ID."""
        return self.build(
            f"{NO_PYTHON_REPOSITORY}:latest",
            NO_PYTHON_DOCKERFILE.parent,
            dockerfile=NO_PYTHON_DOCKERFILE,
            build_args={"BASE_IMAGE": base},
        )

    def build_any_image(self, bundle: Image, base: str) -> Image:
        """examples/any-image on ``base`` (no Python) with ``bundle``'s /opt/secretinit."""
        tag = f"{ANY_IMAGE_REPOSITORY}:{bundle.name}"
        started = time.monotonic()
        image_id = self.build(
            tag,
            ROOT / "examples",
            dockerfile=ANY_IMAGE_DOCKERFILE,
            build_args={"BASE_IMAGE": base, "BUNDLE_IMAGE": bundle.id},
        )
        elapsed = time.monotonic() - started
        size = self.image_size(image_id)
        return Image(bundle.name, bundle.providers, image_id, tag, size, elapsed)


def provider_names(root: Path = ROOT) -> list[str]:
    """The providers of this checkout: directories of ``providers/`` with a pyproject.toml."""
    return sorted(p.parent.name for p in (root / "providers").glob("*/pyproject.toml"))


def provider_schemes(name: str, root: Path = ROOT) -> list[str]:
    """The schemes a provider registers in the ``secretinit.providers`` entry-point group."""
    with (root / "providers" / name / "pyproject.toml").open("rb") as handle:
        project = tomllib.load(handle)["project"]
    return sorted(project.get("entry-points", {}).get("secretinit.providers", {}))


def provider_sets(each: bool = False, root: Path = ROOT) -> dict[str, tuple[str, ...]]:
    """The images to build: the core alone, every provider, and with ``each`` one per provider."""
    names = provider_names(root)
    sets: dict[str, tuple[str, ...]] = {"core": ()}
    if each:
        sets.update((name, (name,)) for name in names)
    if names:
        sets["all"] = tuple(names)
    return sets


class Container:
    """A detached container: wait for its output, look inside with ``exec``, stop it."""

    def __init__(self, podman: Podman, name: str) -> None:
        self.podman = podman
        self.name = name

    def logs(self) -> str:
        """Everything it wrote, stdout and stderr together."""
        done = self.podman("logs", self.name)
        return done.stdout + done.stderr

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        """Wait until ``text`` appears in the logs; the logs. Fail if it exits first."""
        deadline = time.monotonic() + timeout
        while True:
            logs = self.logs()
            if text in logs:
                return logs
            if not self.running():
                raise AssertionError(f"{self.name} exited before printing {text!r}:\n{logs}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} printed no {text!r} in {timeout} s:\n{logs}")
            time.sleep(0.1)

    def running(self) -> bool:
        """Whether it is still running."""
        done = self.podman("inspect", "--format", "{{.State.Running}}", self.name, check=False)
        return done.stdout.strip() == "true"

    def exit_code(self) -> int:
        """Its exit status, once it has exited."""
        done = self.podman("inspect", "--format", "{{.State.ExitCode}}", self.name)
        return int(done.stdout.strip())

    def exec(self, *command: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``command`` inside it (as the image's user unless ``user``); never raises."""
        options = ["--user", user] if user is not None else []
        return self.podman("exec", *options, self.name, *command, check=False)

    def read(self, path: str, user: str | None = None) -> str:
        """A file's content, read from inside; fails the test if it cannot be read."""
        done = self.exec("cat", path, user=user)
        assert done.returncode == 0, f"cat {path} in {self.name}: {done.stderr}"
        return done.stdout

    def remove(self) -> None:
        """Stop it at once and remove it."""
        self.podman("rm", "--force", "--time", "0", self.name, check=False)


def start(podman: Podman, *arguments: str) -> Container:
    """``podman run --detach`` with a fresh name; the arguments end with the image and command."""
    name = f"secretinit-tier-{os.getpid()}-{os.urandom(4).hex()}"
    podman("run", "--detach", "--name", name, *arguments)
    return Container(podman, name)
