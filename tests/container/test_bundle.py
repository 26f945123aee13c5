"""The self-contained bundle in an image without Python, checked from outside.

The image is examples/any-image: the tier's Debian base with every python3
package purged (no-python.Dockerfile), /opt/secretinit copied in from the
Dockerfile's ``bundle`` target, ``ENTRYPOINT ["/opt/secretinit/secretinit",
"run", "--"]``. Each test runs once for the bundle of the core alone and
once for the bundle with every provider; the application is
``programs/app.sh`` (app.py's protocol in sh), the planted secrets come
from an env-file, as for the Python image. The providers' fetches go to an
OpenBao dev server (TLS), moto and the Key Vault fake started on the host's
loopback, reached with ``--network host``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from bundle.build import SYSTEM_LIBRARIES
from conftest import assert_no_leak
from secretinit.testing.ports import free_port
from tests.container.checks import (
    LOAD_ENTRY_POINTS,
    SECRET_DIR,
    app_report,
    declare,
    expected_providers,
    ids,
    listed_providers,
    mounts,
    private_files,
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

if TYPE_CHECKING:
    from tests.container.conftest import Images

pytestmark = pytest.mark.container

BUNDLE = "/opt/secretinit"
COMMAND = f"{BUNDLE}/secretinit"
APP = ["/tier/app.sh"]
# The example's production declaration is not what these checks declare.
NO_CONFIG = ("--env", "SECRETINIT_CONFIG=")
GLIBC_FLOOR = (2, 36)  # the README's "Use in any image": the bundle built on bookworm


def declared(secrets_dir: Path, planted: dict[str, str]) -> list[str]:
    """The planted env-file secrets, declared by variable, without the example's config."""
    return [*mounts(secrets_dir), *NO_CONFIG, *declare(planted)]


def run_in(podman: Podman, image: Image, *arguments: str, **kwargs: Any) -> Any:
    """``podman run --rm`` of ``image`` with ``arguments`` (options, then the command)."""
    return podman("run", "--rm", *arguments, **kwargs)


def shell(podman: Podman, image: Image, script: str) -> str:
    """The output of ``sh -c script`` in ``image``, bypassing secretinit."""
    done = podman(
        "run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", image.id, "-c", script
    )
    return str(done.stdout)


def test_the_image_has_no_python(podman: Podman, any_image: Image) -> None:
    found = shell(
        podman,
        any_image,
        "command -v python3 python; ls -d /usr/lib/python3* /usr/local/lib/python3* 2>/dev/null; "
        "echo end",
    )
    assert found.split() == ["end"]


def test_the_bundle_loads_no_library_of_the_image(podman: Podman, any_image: Image) -> None:
    """Beyond glibc, every library the bundle's ELF files need resolves inside it."""
    listing = shell(
        podman,
        any_image,
        f"find {BUNDLE} -type f \\( -name '*.so*' -o -path '*/runtime/bin/*' \\) -exec ldd {{}} +",
    )
    outside = set()
    for line in listing.splitlines():
        name, arrow, target = line.strip().partition(" => ")
        if arrow and name not in SYSTEM_LIBRARIES and not target.startswith(BUNDLE):
            outside.add(line.strip())
    assert "python3" in listing
    assert not outside, sorted(outside)


def test_glibc_floor(podman: Podman, any_image: Image, tmp_path: Path) -> None:
    """No ELF file of the bundle needs a glibc newer than the README states."""
    container = podman("create", any_image.id).stdout.strip()
    try:
        podman("cp", f"{container}:{BUNDLE}", str(tmp_path / "bundle"))
    finally:
        podman("rm", container)
    needed: set[tuple[int, ...]] = set()
    for path in (tmp_path / "bundle").rglob("*"):
        if path.is_file() and not path.is_symlink() and path.read_bytes()[:4] == b"\x7fELF":
            symbols = subprocess.run(
                ["objdump", "-T", str(path)], capture_output=True, text=True, check=True
            ).stdout
            for version in re.findall(r"GLIBC_(\d+(?:\.\d+)+)", symbols):
                needed.add(tuple(int(part) for part in version.split(".")))
    assert needed, "no glibc symbol version found: objdump read nothing"
    assert max(needed) <= GLIBC_FLOOR, max(needed)
    RECORDS.setdefault(f"bundle {any_image.name}", {})["glibc_floor"] = ".".join(
        map(str, max(needed))
    )


def test_version_and_entry_points(podman: Podman, any_image: Image) -> None:
    direct = ("--network", "none", "--entrypoint", COMMAND, any_image.id)
    version = run_in(podman, any_image, *direct, "--version")
    assert version.stdout.startswith("secretinit, version ")
    listing = run_in(podman, any_image, *direct, "providers")
    expected = expected_providers(any_image.providers)
    assert listed_providers(listing.stdout) == expected
    # Every entry point imports, SDK included, in the bundle's own interpreter.
    load = run_in(
        podman,
        any_image,
        "--network",
        "none",
        "--entrypoint",
        f"{BUNDLE}/bin/python3",
        any_image.id,
        "-I",
        "-c",
        LOAD_ENTRY_POINTS,
    )
    assert sorted(load.stdout.split()) == sorted(expected)
    # How secretinit runs its own CLI (a refresh run): the same in bundle form.
    again = run_in(
        podman,
        any_image,
        "--network",
        "none",
        "--entrypoint",
        f"{BUNDLE}/bin/python3",
        any_image.id,
        "-I",
        "-c",
        "import subprocess\n"
        "from secretinit._supervisor import program_argv\n"
        "subprocess.run(program_argv('--version'), check=True)",
    )
    assert again.stdout == version.stdout


def test_python_variables_of_the_image_do_not_reach_the_bundle(
    podman: Podman, any_image: Image
) -> None:
    """An application image's PYTHONHOME/PYTHONPATH are for its own Python, not the bundle's."""
    done = run_in(
        podman,
        any_image,
        "--network",
        "none",
        "--env",
        "PYTHONHOME=/nowhere",
        "--env",
        "PYTHONPATH=/nowhere",
        *NO_CONFIG,
        any_image.id,
        COMMAND,
        "run",
        "--",
        "sh",
        "-c",
        'echo "$PYTHONHOME"',
    )
    assert done.stdout.strip() == "/nowhere"  # passed to the application untouched


@pytest.fixture(scope="session")
def running_bundle(
    podman: Podman, any_image: Image, secrets_dir: Path, planted: dict[str, str]
) -> Iterator[Container]:
    """The bundle image as a user would run it: non-root, a tmpfs at /run/secretinit."""
    container = start_container(
        podman,
        *mounts(secrets_dir),
        "--tmpfs",
        f"{SECRET_DIR}:U,mode=0700",
        *NO_CONFIG,
        *declare(planted),
        any_image.id,
        *APP,
    )
    try:
        container.wait_for("APP-REPORT")
        yield container
    finally:
        container.remove()


def test_pid1_is_the_bundles_lean_supervisor(running_bundle: Container) -> None:
    argv = running_bundle.read("/proc/1/cmdline").split("\0")
    assert argv[:4] == [f"{BUNDLE}/bin/python3", "-I", "-S", "-B"], argv
    assert argv[4].startswith(f"{BUNDLE}/lib/")
    assert argv[4].endswith("/secretinit/_supervisor.pyc"), argv
    assert argv[argv.index("--") + 1 :][:1] == APP
    assert ids(process_status(running_bundle, 1), "Uid") == {APP_UID}
    # Nothing but the standard library in the resident process.
    maps = running_bundle.read("/proc/1/maps")
    assert "site-packages/click" not in maps
    rss = process_status(running_bundle, 1)["VmRSS"].split()[0]
    RECORDS.setdefault("supervisor_rss_kb", {})["bundle"] = int(rss)


def test_application_runs_as_non_root_child_of_pid1(running_bundle: Container) -> None:
    report = app_report(running_bundle.logs())
    assert (report["uid"], report["gid"], report["ppid"]) == (APP_UID, APP_UID, 1)


def test_secret_files_private_on_tmpfs(running_bundle: Container, planted: dict[str, str]) -> None:
    private_files(running_bundle, SECRET_DIR, list(planted), APP_UID)
    for name, value in planted.items():
        assert running_bundle.read(f"{SECRET_DIR}/{name}") == value
    report = app_report(running_bundle.logs())
    environ = running_bundle.read(f"/proc/{report['pid']}/environ").split("\0")
    for name in planted:
        assert f"{name}_FILE={SECRET_DIR}/{name}" in environ
        assert not any(entry.startswith(f"{name}=") for entry in environ)
    logs = running_bundle.logs()
    assert f"resolved {len(planted)} secrets to {SECRET_DIR}" in logs
    assert_no_leak(planted.values(), logs, "\0".join(environ))


def test_stop_forwards_sigterm(
    podman: Podman,
    any_image: Image,
    secrets_dir: Path,
    planted: dict[str, str],
    containers: list[Container],
) -> None:
    container = start_container(
        podman, *mounts(secrets_dir), *NO_CONFIG, *declare(planted), any_image.id, *APP
    )
    containers.append(container)
    report = app_report(container.wait_for("APP-REPORT"))
    assert report["file_variables"]["DB_PASSWORD_FILE"].startswith("/dev/shm/secretinit-")
    elapsed = stop_in_time(container)
    RECORDS.setdefault(f"bundle {any_image.name}", {})["stop_seconds"] = round(elapsed, 2)


@pytest.mark.parametrize(
    ("command", "status"),
    [
        pytest.param(["sh", "-c", "exit 3"], 3, id="the command's status"),
        pytest.param(["sh", "-c", "kill -TERM $$"], 128 + 15, id="killed by a signal"),
        pytest.param(["/no/such/program"], 127, id="not found"),
        pytest.param(["/etc/hostname"], 126, id="not executable"),
    ],
)
def test_exit_statuses(podman: Podman, any_image: Image, command: list[str], status: int) -> None:
    done = run_in(
        podman, any_image, "--network", "none", *NO_CONFIG, any_image.id, *command, check=False
    )
    assert done.returncode == status, done.stderr


def test_missing_secret_stops_before_the_application(
    podman: Podman, any_image: Image, secrets_dir: Path, planted: dict[str, str]
) -> None:
    done = run_in(
        podman,
        any_image,
        *declared(secrets_dir, planted),
        "--env",
        "SIGNING_KEY=docker-secret://signing_key",
        any_image.id,
        *APP,
        check=False,
    )
    assert done.returncode == 69
    assert "APP-STARTED" not in done.stdout
    assert "no docker secret 'signing_key' in /run/secrets" in done.stderr
    assert_no_leak(planted.values(), done.stdout, done.stderr)


def test_orphans_are_reaped_as_pid1(podman: Podman, any_image: Image) -> None:
    """An orphan that exits becomes PID 1's child: the supervisor reaps it."""
    script = (
        "(sleep 0.2 &); sleep 1.5; "
        'for s in /proc/[0-9]*/stat; do read -r line < $s && echo "$line"; done'
    )
    done = run_in(
        podman, any_image, "--network", "none", *NO_CONFIG, any_image.id, "sh", "-c", script
    )
    states = [line.rsplit(")", 1)[1].split()[:2] for line in done.stdout.splitlines() if line]
    assert states, done.stdout
    zombies = [state for state in states if state[0] == "Z"]
    assert zombies == [], done.stdout


def test_docker_secret_and_root_start_with_user(
    podman: Podman, any_image: Image, tmp_path: Path
) -> None:
    """A Swarm-like start: root-only /run/secrets, root start dropping to --user."""
    value = f"swarm-{secrets.token_hex(8)}"
    secrets_dir = tmp_path / "run-secrets"
    secrets_dir.mkdir()
    (secrets_dir / "signing_key").write_text(value)
    (secrets_dir / "signing_key").chmod(0o400)
    done = run_in(
        podman,
        any_image,
        "--network",
        "none",
        "--user",
        "0:0",
        "--volume",
        f"{secrets_dir}:/run/secrets:ro",
        "--tmpfs",
        f"{SECRET_DIR}:mode=0755",
        "--env",
        f"SECRETINIT_USER={APP_UID}",
        "--env",
        "SIGNING_KEY=docker-secret://signing_key",
        *NO_CONFIG,
        any_image.id,
        "sh",
        "-c",
        'id -u; grep ^Uid: /proc/1/status; stat -L -c "%a %u" "$SIGNING_KEY_FILE"; '
        'sha256sum < "$SIGNING_KEY_FILE"; cat /run/secrets/signing_key 2>&1 || true',
    )
    lines = done.stdout.splitlines()
    assert lines[0] == str(APP_UID)
    assert lines[1].split()[1:] == [str(APP_UID)] * 4
    assert lines[2] == f"400 {APP_UID}"
    assert lines[3].split()[0] == hashlib.sha256(value.encode()).hexdigest()
    assert "Permission denied" in lines[4]
    assert_no_leak([value], done.stdout, done.stderr)


def test_check_and_fetch(
    podman: Podman, any_image: Image, secrets_dir: Path, planted: dict[str, str]
) -> None:
    checked = run_in(
        podman,
        any_image,
        *declared(secrets_dir, planted),
        "--entrypoint",
        COMMAND,
        any_image.id,
        "check",
    )
    for name in planted:
        assert re.search(rf"^{name} .* ok \(\d+ bytes\)$", checked.stdout, re.MULTILINE)
    fetched = run_in(
        podman,
        any_image,
        *declared(secrets_dir, planted),
        "--entrypoint",
        "/bin/sh",
        any_image.id,
        "-c",
        f"{COMMAND} fetch --dir /dev/shm/fetched && stat -L -c '%n %a' /dev/shm/fetched/*",
    )
    assert sorted(fetched.stdout.split("\n")[:-1]) == sorted(
        f"/dev/shm/fetched/{name} 400" for name in planted
    )
    assert_no_leak(planted.values(), checked.stdout, checked.stderr, fetched.stdout)


def test_bundled_ca_certificates(podman: Podman, any_image: Image) -> None:
    """Each TLS provider's SDK verifies with the CA bundle inside /opt/secretinit by default."""
    if not any_image.providers:
        done = shell(podman, any_image, f"find {BUNDLE} -name cacert.pem | wc -l")
        assert done.strip() == "0"  # the core speaks no TLS and carries no CA bundle
        return
    done = run_in(
        podman,
        any_image,
        "--network",
        "none",
        "--entrypoint",
        f"{BUNDLE}/bin/python3",
        any_image.id,
        "-I",
        "-c",
        "import ssl, requests.utils\n"
        "path = requests.utils.DEFAULT_CA_BUNDLE_PATH\n"
        "context = ssl.create_default_context(cafile=path)\n"
        "print(path, context.cert_store_stats()['x509_ca'])",
    )
    path, count = done.stdout.split()
    assert path.startswith(f"{BUNDLE}/lib/")
    assert int(count) > 100


# One fetch from each store, on the host's loopback -----------------------------


@pytest.fixture(scope="session")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """OpenBao (TLS), moto and the Key Vault fake on the host, each holding one secret."""
    import boto3
    from moto.server import ThreadedMotoServer
    from secretinit_azure.testing import FakeKeyVault, make_certificates
    from secretinit_vault.testing import DevServer

    work = tmp_path_factory.mktemp("stores")
    work.chmod(0o755)
    values = {name: f"{name}-{secrets.token_hex(8)}" for name in ("vault", "aws", "azure")}
    bao = DevServer(work / "bao", tls=True).start()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    certificates = make_certificates(work / "azure-ca")
    keyvault = FakeKeyVault(certificates).start()
    try:
        bao.api("POST", "secret/data/app/db", {"data": {"password": values["vault"]}})
        host, port = moto.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        boto3.client(
            "secretsmanager",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="tier",
            aws_secret_access_key="tier-secret-key",
        ).create_secret(Name="app/token", SecretString=values["aws"])
        keyvault.set_secret("api-key", values["azure"])
        # The image's system bundle with the fake's CA appended, where
        # REQUESTS_CA_BUNDLE points as it would at a company CA.
        system = Path("/etc/ssl/certs/ca-certificates.crt")
        ca_bundle = work / "ca-certificates.crt"
        ca_bundle.write_bytes(
            (system.read_bytes() if system.exists() else b"") + certificates.ca.read_bytes()
        )
        config = work / "secretinit.toml"
        config.write_text("[providers.azure]\nverify_challenge_resource = false\n")
        for path in (ca_bundle, config, Path(bao.ca_file)):
            path.chmod(0o644)
        (work / "bao").chmod(0o755)
        (work / "bao" / "tls").chmod(0o755)
        yield {
            "values": values,
            "options": [
                "--network",
                "host",
                "--volume",
                f"{bao.ca_file}:/tier-ca/vault-ca.pem:ro",
                "--volume",
                f"{ca_bundle}:/etc/ssl/certs/ca-certificates.crt:ro",
                "--volume",
                f"{config}:/tier-config/secretinit.toml:ro",
                "--env",
                "SECRETINIT_CONFIG=/tier-config/secretinit.toml",
                "--env",
                f"VAULT_ADDR={bao.address}",
                "--env",
                f"VAULT_TOKEN={bao.root_token}",
                "--env",
                "VAULT_CACERT=/tier-ca/vault-ca.pem",
                "--env",
                f"AWS_ENDPOINT_URL={endpoint}",
                "--env",
                "AWS_REGION=us-east-1",
                "--env",
                "AWS_DEFAULT_REGION=us-east-1",
                "--env",
                "AWS_ACCESS_KEY_ID=tier",
                "--env",
                "AWS_SECRET_ACCESS_KEY=tier-secret-key",
                "--env",
                f"IDENTITY_ENDPOINT={keyvault.identity_endpoint}",
                "--env",
                f"IDENTITY_HEADER={keyvault.identity_header}",
                "--env",
                "REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt",
                # Never the real instance metadata address, from the host's network.
                "--env",
                f"AZURE_POD_IDENTITY_AUTHORITY_HOST=http://127.0.0.1:{free_port()}",
                "--env",
                "DB_PASSWORD=vault://secret/app/db#password",
                "--env",
                "API_TOKEN=aws-sm://app/token",
                "--env",
                f"API_KEY=azure-kv://{keyvault.host}/api-key",
            ],
            "secrets": {"DB_PASSWORD": "vault", "API_TOKEN": "aws", "API_KEY": "azure"},
            "tokens": [bao.root_token],
        }
    finally:
        keyvault.stop()
        moto.stop()
        bao.stop()


def test_one_fetch_from_each_store(podman: Podman, images: Images, stores: dict[str, Any]) -> None:
    """The bundle of every provider reads OpenBao, AWS and Key Vault through their SDKs."""
    any_image = images.any_image("all")
    digests = " ".join(f'"${name}_FILE"' for name in stores["secrets"])
    done = run_in(
        podman,
        any_image,
        *stores["options"],
        any_image.id,
        "sh",
        "-c",
        f"sha256sum {digests}",
        timeout=120,
    )
    got = {Path(line.split()[1]).name: line.split()[0] for line in done.stdout.splitlines()}
    for name, store in stores["secrets"].items():
        value = stores["values"][store]
        assert got[name] == hashlib.sha256(value.encode()).hexdigest(), (name, done.stderr)
    assert "resolved 3 secrets" in done.stderr
    assert_no_leak([*stores["values"].values(), *stores["tokens"]], done.stdout, done.stderr)


def test_record_startup(podman: Podman, any_image: Image, secrets_dir: Path) -> None:
    """Not a speed assertion: ``secretinit run`` of ``true`` with one env-file secret."""
    rounds = 7
    script = 'for i in $(seq 9); do sh /tier/time-run.sh "$@" || exit 1; done'
    done = run_in(
        podman,
        any_image,
        *mounts(secrets_dir),
        *NO_CONFIG,
        "--env",
        "DB_PASSWORD=env-file:///tier-secrets/app.env#DB_PASSWORD",
        "--entrypoint",
        "/bin/sh",
        any_image.id,
        "-c",
        script,
        "timing",
        COMMAND,
        "run",
        "--",
        "true",
    )
    micros = sorted(int(n) for n in done.stdout.split()[2:])  # two warm-ups
    assert len(micros) == rounds
    median_ms = micros[rounds // 2] / 1000
    RECORDS.setdefault(f"bundle {any_image.name}", {})["run_1_secret_true_ms"] = round(median_ms, 1)


def test_refresh_in_bundle_form(
    podman: Podman, images: Images, tmp_path: Path, containers: list[Container]
) -> None:
    """``--refresh``: each refresh run is the bundle's own CLI (program_argv), as the user."""
    values = [f"bundle-refresh-{n}-{secrets.token_hex(4)}" for n in (1, 2)]
    store = tmp_path / "store"
    store.mkdir(mode=0o755)
    env_file = store / "app.env"
    env_file.write_text(f"A={values[0]}\n")
    env_file.chmod(0o644)
    container = start_container(
        podman,
        "--network",
        "none",
        "--volume",
        f"{store}:/store:ro",
        "--tmpfs",
        f"{SECRET_DIR}:U,mode=0700",
        *NO_CONFIG,
        "--env",
        "A=env-file:///store/app.env#A",
        "--env",
        "SECRETINIT_REFRESH=1",
        "--env",
        "SECRETINIT_ON_CHANGE=signal:HUP",
        images.any_image("core").id,
        "sh",
        "-c",
        'report() { echo "files A=$(sha256sum < "$A_FILE" | cut -c1-64)"; }; trap report HUP; '
        "report; while :; do sleep 1 & wait $!; done",
    )
    containers.append(container)
    digests = [hashlib.sha256(value.encode()).hexdigest() for value in values]
    container.wait_for(f"files A={digests[0]}")
    with open(env_file, "r+") as stream:  # in place: the bind mount keeps the inode
        stream.truncate()
        stream.write(f"A={values[1]}\n")
    logs = container.wait_for(f"files A={digests[1]}")
    assert "refreshed: A changed (1 of 1 secrets)" in logs
    probe = container.exec(COMMAND, "status", "--dir", SECRET_DIR)
    assert probe.returncode == 0, probe.stdout + probe.stderr
    assert probe.stdout.startswith("ready: last success")
    assert_no_leak(values, container.logs())
