"""Each provider's whole fetch of one secret, against the plain SDK script a user would write.

The stores are the test suite's: an OpenBao dev server (Vault's API), moto's
server (AWS Secrets Manager) and the suite's HTTPS fake of Key Vault, each in
a process of its own on loopback. Every contender is a whole process that
reads the one secret and writes it to a file, mode 0400, on tmpfs:
``secretinit fetch`` of this checkout and of the baseline commit, and the
SDK's plain script (hvac, boto3, azure-identity + azure-keyvault-secrets).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path

from bench._common import Contender, emptier, time_command

HERE = Path(__file__).resolve().parent
PROVIDERS = ("vault", "aws-sm", "azure-kv", "gcp-sm")

HVAC_SCRIPT = """
import os, sys, hvac
answer = hvac.Client().secrets.kv.v2.read_secret_version(
    path="bench/one", mount_point="secret", raise_on_deleted_version=True)
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400)
os.write(fd, answer["data"]["data"]["value"].encode())
os.close(fd)
"""
BOTO3_SCRIPT = """
import os, sys, boto3
value = boto3.client("secretsmanager").get_secret_value(SecretId="bench/s0000")["SecretString"]
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400)
os.write(fd, value.encode())
os.close(fd)
"""
AZURE_SCRIPT = """
import os, sys
from azure.identity import DefaultAzureCredential
from azure.keyvault.secrets import SecretClient
client = SecretClient(sys.argv[2], DefaultAzureCredential(), verify_challenge_resource=False)
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400)
os.write(fd, client.get_secret("bench-0").value.encode())
os.close(fd)
"""
GCP_SCRIPT = """
import os, sys, google.auth
from google.cloud import secretmanager
credentials, project = google.auth.default()
client = secretmanager.SecretManagerServiceClient(
    credentials=credentials, transport="grpc", client_options={"api_endpoint": sys.argv[2]})
name = f"projects/{project}/secrets/bench-0/versions/latest"
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400)
os.write(fd, client.access_secret_version(name=name).payload.data)
os.close(fd)
"""


class Store:
    """A running store: the environment a contender needs and the reference of the secret."""

    def __init__(
        self, scheme: str, env: dict[str, str], reference: str, script: str, *args: str
    ) -> None:
        self.scheme = scheme
        self.env = env
        self.reference = reference
        self.script = script  # the plain SDK script: python -c SCRIPT OUTPUT_FILE ARGS...
        self.args = args


@contextmanager
def vault(work: Path) -> Iterator[Store]:
    from secretinit_vault.testing import DevServer

    with DevServer(work / "bao") as server:
        server.api("POST", "secret/data/bench/one", {"data": {"value": "bench-vault-value"}})
        env = {**server.environ(), "HOME": str(work / "home")}
        yield Store("vault", env, "vault://secret/bench/one#value", HVAC_SCRIPT)


@contextmanager
def aws(work: Path) -> Iterator[Store]:
    from bench.aws.__main__ import environment, moto_server, seed

    with moto_server() as server:
        env = environment(server, str(work / "home"))
        seed(server, env, 1)  # bench/s0000
        yield Store("aws-sm", env, "aws-sm://bench/s0000", BOTO3_SCRIPT)


@contextmanager
def azure(work: Path) -> Iterator[Store]:
    from bench.azure.__main__ import environment, fake_vault

    with fake_vault(0.0) as fake:
        env = environment(fake, work / "home")
        config = work / "azure.toml"
        config.write_text("[providers.azure]\nverify_challenge_resource = false\n")
        env["SECRETINIT_CONFIG"] = str(config)
        reference = f"azure-kv://{fake['host']}/bench-0"
        yield Store("azure-kv", env, reference, AZURE_SCRIPT, fake["vault_url"])


@contextmanager
def gcp(work: Path) -> Iterator[Store]:
    from bench.gcp.__main__ import environment, fake_service

    with fake_service(0.0) as fake:
        env = environment(fake, work / "home")
        endpoint = fake.addresses["grpc"]  # the provider's default transport
        config = work / "gcp.toml"
        config.write_text(f'[providers.gcp]\ntransport = "grpc"\nendpoint = "{endpoint}"\n')
        env["SECRETINIT_CONFIG"] = str(config)
        yield Store("gcp-sm", env, "gcp-sm://bench-0", GCP_SCRIPT, endpoint)


STORES: dict[str, Callable[[Path], AbstractContextManager[Store]]] = {
    "vault": vault,
    "aws-sm": aws,
    "azure-kv": azure,
    "gcp-sm": gcp,
}


def has_provider(bin_dir: Path, scheme: str) -> bool:
    """Whether the secretinit of ``bin_dir`` has a provider for ``scheme`` installed."""
    probe = subprocess.run(
        [str(bin_dir / "python"), "-I", "-c", PROBE, scheme], capture_output=True, check=False
    )
    return probe.returncode == 0


PROBE = """
import sys
from secretinit._registry import ProviderRegistry
ProviderRegistry().load(sys.argv[1])
"""


def contenders(store: Store, bins: dict[str, Path], work: Path) -> list[Contender]:
    """The fetch of one secret by each secretinit (label -> bin directory) and by the SDK."""
    found = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECRETINIT_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # production images carry bytecode
    env.update(store.env)
    env["BENCH_SECRET"] = store.reference
    env["SECRETINIT_LOG_LEVEL"] = "warning"
    for label, bin_dir in bins.items():
        if not has_provider(bin_dir, store.scheme):
            continue  # a provider newer than the baseline
        out = work / "out" / f"{store.scheme}-{label}"
        out.mkdir(parents=True, mode=0o700)
        argv = [str(bin_dir / "secretinit"), "fetch", "--dir", str(out)]
        found.append(
            Contender(f"secretinit fetch ({label})", time_command(argv, env), emptier(out))
        )
    target = work / "out" / f"{store.scheme}-sdk"
    target.mkdir(parents=True, mode=0o700)
    sdk = [sys.executable, "-c", store.script, str(target / "value"), *store.args]
    sdk_env = {k: v for k, v in env.items() if k != "BENCH_SECRET"}
    found.append(Contender("plain SDK script", time_command(sdk, sdk_env), emptier(target)))
    return found


def check_contenders(found: list[Contender], work: Path, scheme: str) -> None:
    """Run each once, untimed, and check they all wrote the secret: never time a failure."""
    for contender in found:
        if contender.before is not None:
            contender.before()
        contender.once()
    written = {}
    for directory in (work / "out").glob(f"{scheme}-*"):
        # secretinit's file is named for the secret; the SDK script's is "value".
        files = [directory / name for name in ("BENCH_SECRET", "value")]
        value = next((f.read_bytes() for f in files if f.exists()), b"")
        if not value:
            raise SystemExit(
                f"{directory.name} wrote no secret: the benchmark would time a failure"
            )
        written[directory.name] = value
    if len(set(written.values())) != 1:
        raise SystemExit(f"{scheme}: the contenders wrote different values: {sorted(written)}")


@contextmanager
def stores(work: Path, schemes: tuple[str, ...]) -> Iterator[dict[str, Store]]:
    """Every store of ``schemes``, started (and stopped at the end)."""
    with ExitStack() as stack:
        yield {scheme: stack.enter_context(STORES[scheme](work)) for scheme in schemes}
