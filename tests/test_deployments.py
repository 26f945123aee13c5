"""The deployment examples: Kubernetes manifests, the compose file, the Swarm refresh stack.

No cluster nor compose engine runs here (Debian's podman-compose 1.0.3
ignores ``depends_on`` conditions and a tmpfs volume's ``driver_opts``, so
it would not run the compose file as written): the manifests are validated
offline against Kubernetes' own schemas (``kubernetes-validate``, strict:
an unknown field fails), the files are checked for what the examples
promise (a tmpfs, a locked-down non-root user, probes, the init step's
condition), and every ``secretinit`` command in them, with its
environment, is run on this machine in the order the orchestrator would
run it: their paths mapped into a temporary directory, their values read
from a ``.env`` file (``SECRETINIT_ENV_FILE``) instead of Vault.
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import time
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from conftest import ROOT, assert_no_leak, secretinit_executable

EXAMPLES = ROOT / "examples"
KUBERNETES = EXAMPLES / "kubernetes"
# Native sidecars (initContainers with restartPolicy: Always) are on by default from 1.29.
KUBERNETES_VERSIONS = ["1.29.0", kubernetes_validate.utils.latest_version()]
# The application: exits 0 on SIGTERM, as a well-behaved server does.
# The application: it says so once its SIGTERM trap is set (a SIGTERM before
# that kills it, status 143, which is what a real application would do too).
SLEEPER = ["sh", "-c", "trap 'exit 0' TERM; echo sleeper-trapping; while :; do sleep 0.1; done"]
SLEEPER_READY = "sleeper-trapping"
TIMEOUT = 30


def documents(path: Path) -> list[dict[str, Any]]:
    with path.open() as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc]


def deployments() -> dict[str, dict[str, Any]]:
    """The pod spec of each Kubernetes form, by file name."""
    found = {}
    for name in ("init-container", "sidecar", "entrypoint"):
        [deployment] = documents(KUBERNETES / f"{name}.yaml")
        assert deployment["kind"] == "Deployment"
        found[name] = deployment["spec"]["template"]["spec"]
    return found


def kubernetes_config() -> str:
    [config] = [d for d in documents(KUBERNETES / "config.yaml") if d["kind"] == "ConfigMap"]
    text: str = config["data"]["secretinit.toml"]
    return text


def declared_names(config_text: str) -> list[str]:
    return sorted(tomllib.loads(config_text)["secrets"])


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", ["config", "init-container", "sidecar", "entrypoint"])
def test_kubernetes_manifests_are_valid(name: str, version: str) -> None:
    for document in documents(KUBERNETES / f"{name}.yaml"):
        kubernetes_validate.validate(document, version, strict=True)


def test_the_validation_refuses_a_misspelt_field() -> None:
    """The check above can fail: strict validation knows every field of a pod."""
    [deployment] = documents(KUBERNETES / "sidecar.yaml")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["initContainers"][0]["restartPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def probe_commands(container: Mapping[str, Any]) -> list[list[str]]:
    return [
        container[probe]["exec"]["command"]
        for probe in ("startupProbe", "readinessProbe")
        if probe in container
    ]


def test_kubernetes_pods_are_locked_down_on_a_memory_volume() -> None:
    for name, pod in deployments().items():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == 10001, name
        [shared] = [v for v in pod["volumes"] if "emptyDir" in v]
        assert shared["emptyDir"]["medium"] == "Memory", name
        containers = [*pod.get("initContainers", []), *pod["containers"]]
        for container in containers:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
        probes = [command for c in containers for command in probe_commands(c)]
        assert probes and all(command[:2] == ["secretinit", "status"] for command in probes), name
    pods = deployments()
    assert "restartPolicy" not in pods["init-container"]["initContainers"][0]
    sidecar = pods["sidecar"]["initContainers"][0]
    assert sidecar["restartPolicy"] == "Always"
    assert "startupProbe" in sidecar  # the application starts after the first fetch
    [entrypoint] = pods["entrypoint"]["containers"]
    command = entrypoint["command"]
    assert command[command.index("--on-change") + 1] == "signal:HUP"
    assert "--refresh" in command


class Host:
    """A container's paths mapped into a temporary directory on this machine."""

    def __init__(self, root: Path, mounts: Mapping[str, Path]) -> None:
        self.root = root
        self.mounts = dict(mounts)

    def path(self, text: str) -> str:
        for inside, outside in self.mounts.items():
            if text == inside or text.startswith(inside + "/"):
                return str(outside) + text[len(inside) :]
        return text

    def environ(self, env: Mapping[str, str], values: Mapping[str, str]) -> dict[str, str]:
        """The container's environment here: paths mapped, values from a .env file."""
        env_file = self.root / "values.env"
        env_file.write_text("".join(f"{name}={value}\n" for name, value in values.items()))
        mapped = {name: self.path(str(value)) for name, value in env.items()}
        mapped.pop("SECRETINIT_USER", None)  # the image's user: this machine has none
        return {**os.environ, **mapped, "SECRETINIT_ENV_FILE": str(env_file)}

    def argv(self, command: list[str]) -> list[str]:
        assert command[0] == "secretinit", command
        return [secretinit_executable(), *(self.path(arg) for arg in command[1:])]


def run_to_end(host: Host, command: list[str], env: Mapping[str, str]) -> str:
    result = subprocess.run(
        host.argv(command), env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


class Started:
    """A long-running ``secretinit`` (a sidecar, an entrypoint), its output in a file."""

    def __init__(self, host: Host, command: list[str], env: Mapping[str, str]) -> None:
        self.output = host.root / f"output-{time.monotonic_ns()}"
        with self.output.open("wb") as stream:
            self.process = subprocess.Popen(
                host.argv(command), env=env, stdout=stream, stderr=subprocess.STDOUT
            )

    def wait_until(
        self, host: Host, probe: list[str], env: Mapping[str, str], saying: str = ""
    ) -> None:
        """Run ``probe`` as the orchestrator would until it passes (and prints ``saying``)."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            result = subprocess.run(
                host.argv(probe), env=env, capture_output=True, timeout=TIMEOUT, check=False
            )
            if result.returncode == 0 and saying.encode() in result.stdout:
                return
            assert self.process.poll() is None, self.text()
            assert time.monotonic() < deadline, f"{probe} never passed:\n{self.text()}"
            time.sleep(0.1)

    def wait_for_output(self, text: str) -> None:
        """Wait until ``text`` is in the output (the application's own start)."""
        deadline = time.monotonic() + TIMEOUT
        while text not in self.text():
            assert self.process.poll() is None, self.text()
            assert time.monotonic() < deadline, f"never said {text!r}:\n{self.text()}"
            time.sleep(0.05)

    def stop(self) -> int:
        """SIGTERM, as the orchestrator stops a container; the exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=TIMEOUT)

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=TIMEOUT)


@pytest.fixture
def started() -> Iterator[list[Started]]:
    """Long-running secretinit processes of a test, killed if the test left them running."""
    running: list[Started] = []
    yield running
    for process in running:
        process.kill()


def canaries(names: list[str]) -> dict[str, str]:
    return {name: f"deploy-canary-{name.lower()}-{os.getpid()}" for name in names}


def assert_files(directory: Path, values: Mapping[str, str]) -> None:
    for name, value in values.items():
        assert (directory / name).read_text() == value
        assert (directory / name).stat().st_mode & 0o777 == 0o400


@pytest.mark.parametrize("form", ["init-container", "sidecar", "entrypoint"])
def test_kubernetes_forms_run_as_written(form: str, tmp_path: Path, started: list[Started]) -> None:
    pod = deployments()[form]
    (tmp_path / "etc").mkdir()
    config = kubernetes_config()
    (tmp_path / "etc" / "secretinit.toml").write_text(config)
    (tmp_path / "shared").mkdir()
    host = Host(tmp_path, {"/shared": tmp_path / "shared", "/etc/secretinit": tmp_path / "etc"})
    values = canaries(declared_names(config))
    outputs = []
    if form == "entrypoint":
        [container] = pod["containers"]
        env = host.environ({e["name"]: e["value"] for e in container["env"]}, values)
        command = [*container["command"], *SLEEPER]
        entry = Started(host, command, env)
        started.append(entry)
        entry.wait_until(host, container["readinessProbe"]["exec"]["command"], env)
        entry.wait_for_output(SLEEPER_READY)
        assert entry.stop() == 0, entry.text()
        outputs.append(entry.text())
    else:
        [init] = pod["initContainers"]
        env = host.environ({e["name"]: e["value"] for e in init["env"]}, values)
        if form == "init-container":
            outputs.append(run_to_end(host, init["command"], env))
        else:  # the sidecar keeps running; the application starts after its startup probe
            sidecar = Started(host, init["command"], env)
            started.append(sidecar)
            sidecar.wait_until(host, init["startupProbe"]["exec"]["command"], env)
            run_to_end(host, init["readinessProbe"]["exec"]["command"], env)
        [app] = pod["containers"]
        for variable in app["env"]:  # what the application is told: files that exist
            assert variable["name"].endswith("_FILE")
            path = Path(host.path(variable["value"]))
            assert path.read_text() == values[variable["name"][: -len("_FILE")]]
        for probe in probe_commands(app):
            run_to_end(host, probe, env)
        if form == "sidecar":
            assert sidecar.stop() == 0, sidecar.text()
            outputs.append(sidecar.text())
    assert_files(tmp_path / "shared" / "secrets", values)
    assert_no_leak(values.values(), *outputs)


def load_compose(path: Path) -> dict[str, Any]:
    with path.open() as stream:
        loaded: dict[str, Any] = yaml.safe_load(stream)
    return loaded


def test_compose_example_runs_as_written(tmp_path: Path, started: list[Started]) -> None:
    compose = load_compose(EXAMPLES / "compose" / "compose.yaml")
    services = compose["services"]
    init, sidecar, app = services["secrets-init"], services["secrets-refresh"], services["app"]
    completed = {"condition": "service_completed_successfully"}
    assert sidecar["depends_on"]["secrets-init"] == completed
    assert app["depends_on"]["secrets-init"] == completed
    # One tmpfs volume shared by all three, the application's read-only.
    volume = compose["volumes"]["secrets"]
    assert volume["driver_opts"]["type"] == "tmpfs"
    assert "uid=10001" in volume["driver_opts"]["o"] and "mode=0700" in volume["driver_opts"]["o"]
    for service in (init, sidecar, app):
        [mount] = service["volumes"]
        assert mount["source"] == "secrets" and mount["target"] == "/run/secretinit"
        assert service["user"] == "10001:10001" and service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]
    assert app["volumes"][0]["read_only"] is True
    [config] = init["configs"]
    config_file = EXAMPLES / "compose" / compose["configs"][config["source"]]["file"]
    run_dir = tmp_path / "run-secretinit"
    host = Host(tmp_path, {"/run/secretinit": run_dir, config["target"]: config_file})
    values = canaries(declared_names(config_file.read_text()))
    env = host.environ(init["environment"], values)
    outputs = [run_to_end(host, init["entrypoint"], env)]
    refresh = Started(host, sidecar["entrypoint"], env)
    started.append(refresh)
    healthcheck = sidecar["healthcheck"]["test"]
    assert healthcheck[0] == "CMD"
    # Healthy from the init step's files already; then from the sidecar's own series.
    refresh.wait_until(host, healthcheck[1:], env, saying="refreshed every 300 s")
    for name, path in app["environment"].items():
        assert Path(host.path(path)).read_text() == values[name[: -len("_FILE")]]
    assert refresh.stop() == 0, refresh.text()
    outputs.append(refresh.text())
    assert_files(run_dir, values)
    assert_no_leak(values.values(), *outputs)


def test_swarm_refresh_stack_runs_as_written(tmp_path: Path, started: list[Started]) -> None:
    stack = load_compose(EXAMPLES / "swarm" / "docker-compose.refresh.yml")
    service = stack["services"]["app"]
    environment = service["environment"]
    assert environment["SECRETINIT_REFRESH"] == "5m"
    assert environment["SECRETINIT_ON_CHANGE"] == "signal:HUP"
    assert service["volumes"][0]["type"] == "tmpfs"
    [config] = service["configs"]
    config_file = EXAMPLES / "swarm" / stack["configs"][config["source"]]["file"]
    run_dir = tmp_path / "run-secretinit"
    host = Host(tmp_path, {"/run/secretinit": run_dir, config["target"]: config_file})
    declared = tomllib.loads(config_file.read_text())["secrets"]
    values = canaries([name for name, spec in declared.items() if "from" in spec])
    env = host.environ(environment, values)
    # The image's ENTRYPOINT, secretinit run --, with the application's command.
    entry = Started(host, ["secretinit", "run", "--", *SLEEPER], env)
    started.append(entry)
    healthcheck = service["healthcheck"]["test"]
    assert healthcheck[0] == "CMD"
    entry.wait_until(host, healthcheck[1:], env)
    entry.wait_for_output(SLEEPER_READY)
    assert entry.stop() == 0, entry.text()
    assert (run_dir / "tls.key").read_text() == values["TLS_KEY"]
    assert (run_dir / "DATABASE_URL").read_text() == (
        f"postgres://app:{values['DB_PASSWORD']}@db:5432/app"
    )
    assert_no_leak(values.values(), entry.text())
