"""The fleet's stores: OpenBao and moto, each planted and behind its rate-limiting proxy."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
SECRETINIT = str(Path(sys.executable).with_name("secretinit"))
TIMEOUT = 120  # --timeout of every process: far above the ideal drain
NAMES = ("S0000", "S0001")  # two secrets a process


@dataclass
class Proxy:
    """The rate-limiting proxy in front of one store."""

    process: subprocess.Popen[str]
    url: str

    def limit(self, rate: float | None) -> None:
        body = json.dumps({"rate": rate, "burst": max(1.0, rate or 1.0)}).encode()
        request = urllib.request.Request(  # noqa: S310 - our own loopback proxy
            f"{self.url}/_fleet/limit", body, method="POST"
        )
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - our own loopback proxy
            pass

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/_fleet/stats", timeout=10) as answer:  # noqa: S310
            stats: dict[str, Any] = json.loads(answer.read())
            return stats


@contextmanager
def child(argv: Sequence[str], env: Mapping[str, str] | None = None) -> Iterator[tuple[Any, str]]:
    """A helper process that prints its port first and serves until its stdin closes."""
    process = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env
    )
    try:
        assert process.stdout is not None
        yield process, f"http://127.0.0.1:{int(process.stdout.readline())}"
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Store:
    """One store: its upstream server, its proxy, and how a process of each contender reads it."""

    name: str
    title: str
    proxy: Proxy
    upstream_pid: int
    env: dict[str, str]
    values: dict[str, str]
    baseline_name: str
    per_process: dict[str, int] = field(default_factory=dict)  # contender -> requests

    def argv(self, contender: str, directory: Path) -> list[str]:
        if contender == "secretinit":
            return [SECRETINIT, "fetch", "--dir", str(directory), "--timeout", str(TIMEOUT)]
        if self.name == "vault":
            spec = directory.with_suffix(".json")
            spec.write_text(
                json.dumps(
                    {
                        "dir": str(directory),
                        "secrets": [[n, f"secret/fleet/{n.lower()}", "value"] for n in NAMES],
                    }
                )
            )
            return [sys.executable, str(ROOT / "bench" / "vault" / "hvac_loop.py"), str(spec)]
        loop = ROOT / "bench" / "aws" / "_boto3_loop.py"
        return [sys.executable, str(loop), str(directory), "fleet/s", str(len(NAMES))]

    def environ(self, contender: str) -> dict[str, str]:
        env = dict(self.env)
        if contender == "secretinit":
            for name in NAMES:
                env[name] = (
                    f"vault://secret/fleet/{name.lower()}#value"
                    if self.name == "vault"
                    else f"aws-sm://fleet/s{name[1:]}"
                )
        return env


def base_environment(home: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "VAULT_", "BAO_", "SECRETINIT_"))
    }
    # Production images carry bytecode; without it every start compiles the
    # SDK again. A lone run per contender writes the caches before any fleet.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(HOME=home, SECRETINIT_LOG_LEVEL="warning")
    return env


@contextmanager
def stores(work: str) -> Iterator[list[Store]]:
    """OpenBao and moto, each planted with the fleet's secrets, each behind its proxy."""
    sys.path.insert(0, str(ROOT / "providers" / "vault"))
    from secretinit_vault.testing import DevServer

    base = base_environment(work)
    values = {name: secrets.token_urlsafe(18) for name in NAMES}
    with ExitStack() as stack:
        bao = stack.enter_context(DevServer(Path(work, "bao")))
        for name, value in values.items():
            for _attempt in range(100):  # secret/ is upgraded to KV 2 just after the start
                try:
                    bao.api("POST", f"secret/data/fleet/{name.lower()}", {"data": {"value": value}})
                    break
                except RuntimeError as err:
                    if "Upgrading" not in str(err):
                        raise
                    time.sleep(0.1)
        vault_proxy, vault_url = stack.enter_context(
            child([sys.executable, "-m", "bench.fleet._proxy", "vault", bao.address])
        )
        vault_env = dict(base, VAULT_ADDR=vault_url, VAULT_TOKEN=bao.root_token)

        moto, moto_url = stack.enter_context(child([sys.executable, "-m", "bench.aws._server"]))
        aws_proxy, aws_url = stack.enter_context(
            child([sys.executable, "-m", "bench.fleet._proxy", "aws", moto_url])
        )
        aws_env = dict(
            base,
            AWS_ACCESS_KEY_ID="AKIDFLEETEXAMPLE",
            AWS_SECRET_ACCESS_KEY="fleet-secret-key",
            AWS_REGION="us-east-1",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_ENDPOINT_URL=aws_url,
            AWS_CONFIG_FILE=os.path.join(work, "none"),
            AWS_SHARED_CREDENTIALS_FILE=os.path.join(work, "none"),
            AWS_EC2_METADATA_DISABLED="true",
        )
        import boto3

        client = boto3.client(
            "secretsmanager",
            endpoint_url=moto_url,
            region_name="us-east-1",
            aws_access_key_id="AKIDFLEETEXAMPLE",
            aws_secret_access_key="fleet-secret-key",
        )
        for name, value in values.items():
            client.create_secret(Name=f"fleet/s{name[1:]}", SecretString=value)
        client.close()
        yield [
            Store(
                "vault",
                "OpenBao",
                Proxy(vault_proxy, vault_url),
                bao.process.pid,  # type: ignore[union-attr]
                vault_env,
                values,
                "hvac loop",
            ),
            Store(
                "aws",
                "Secrets Manager (moto)",
                Proxy(aws_proxy, aws_url),
                moto.pid,
                aws_env,
                values,
                "boto3 loop",
            ),
        ]
