"""moto's server on loopback, with a thin WSGI layer that counts calls and injects faults.

The provider talks to it over real HTTP through boto3, exactly as to AWS:
only the endpoint differs (``AWS_ENDPOINT_URL``). The layer in front of moto
counts each API call by its operation (``X-Amz-Target``), which is how the
tests assert on the calls a fetch made, and can answer the next calls of an
operation with an AWS error (throttling, 5xx, a KMS failure) in AWS's own
wire format, parsed by the real botocore. moto missing is an import error:
the suite fails, it does not skip.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server

from secretinit.testing.ports import free_port

REGION = "us-east-1"
OTHER_REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's default account
ADMIN_KEY = "AKIDADMINEXAMPLE"
ADMIN_SECRET = "admin-secret-key-not-a-value"

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


@dataclass
class Fault:
    """Answer ``times`` calls (None: every call) of an operation with an AWS error."""

    status: int
    code: str
    times: int | None = 1
    delay: float = 0.0
    retry_after: int | None = None  # a Retry-After header, as a proxy in front may send


class AwsServer(ThreadedMotoServer):
    """``ThreadedMotoServer`` on 127.0.0.1, a free port, behind the counting layer."""

    region = REGION
    other_region = OTHER_REGION
    account = ACCOUNT

    def __init__(self) -> None:
        super().__init__(ip_address="127.0.0.1", port=0, verbose=False)
        self.calls: Counter[str] = Counter()
        self.requests: list[tuple[str, dict[str, Any]]] = []
        # When each counted call came, and whether a fault answered it.
        self.arrivals: list[tuple[float, bool]] = []
        self._faults: dict[str, Fault] = {}
        self._lock = threading.Lock()

    def _server_entry(self) -> None:
        # ThreadedMotoServer._server_entry with the counting layer around moto's app.
        app = DomainDispatcherApplication(create_backend_app)
        self._server = make_server(
            self._ip_address,
            self._port,
            self._layer(app),
            True,
            request_handler=MotoRequestHandler,
        )
        self._server_ready_event.set()
        self._server.serve_forever()

    @property
    def url(self) -> str:
        host, port = self.get_host_and_port()
        return f"http://{host}:{port}"

    def _layer(self, app: Callable[[Environ, StartResponse], Iterable[bytes]]) -> Any:
        def layer(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
            # Secrets Manager and SSM speak JSON and name the call in
            # X-Amz-Target; anything else (IAM set-up, moto's API) is not counted.
            target = environ.get("HTTP_X_AMZ_TARGET")
            if not target:
                return app(environ, start_response)
            operation = target.rpartition(".")[2]
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            with self._lock:
                self.calls[operation] += 1
                self.requests.append((operation, json.loads(body or b"{}")))
                fault = self._faults.get(operation)
                self.arrivals.append((time.monotonic(), fault is not None))
                if fault is not None and fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        del self._faults[operation]
            if fault is None:
                return app(environ, start_response)
            time.sleep(fault.delay)
            error = json.dumps({"__type": fault.code, "message": "injected by the test"}).encode()
            headers = [
                ("Content-Type", "application/x-amz-json-1.1"),
                ("Content-Length", str(len(error))),
                ("x-amzn-RequestId", str(uuid.uuid4())),
            ]
            if fault.retry_after is not None:
                headers.append(("Retry-After", str(fault.retry_after)))
            start_response(f"{fault.status} {HTTPStatus(fault.status).phrase}", headers)
            return [error]

        return layer

    def fail(self, operation: str, status: int, code: str, **kwargs: Any) -> None:
        """Answer the next call(s) of ``operation`` (e.g. ``GetSecretValue``) with an error."""
        with self._lock:
            self._faults[operation] = Fault(status, code, **kwargs)

    def reset(self) -> None:
        """Forget the counted calls and the pending faults."""
        with self._lock:
            self.calls.clear()
            self.requests.clear()
            self.arrivals.clear()
            self._faults.clear()

    def counted(self) -> dict[str, int]:
        """The calls made since the last reset, by operation."""
        with self._lock:
            return dict(self.calls)

    def bodies(self, operation: str) -> list[dict[str, Any]]:
        """The JSON bodies of the calls of ``operation`` since the last reset."""
        with self._lock:
            return [body for op, body in self.requests if op == operation]

    def admin(self, service: str, region: str = REGION) -> Any:
        """A client for planting secrets, independent of the provider under test."""
        return boto3.client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.url,
            region_name=region,
            aws_access_key_id=ADMIN_KEY,
            aws_secret_access_key=ADMIN_SECRET,
        )

    def iam_user(self, name: str, actions: list[str]) -> dict[str, str]:
        """An IAM user allowed ``actions`` (none: every call denied); its access key."""
        iam = self.admin("iam")
        iam.create_user(UserName=name)
        if actions:
            policy = {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
            }
            iam.put_user_policy(UserName=name, PolicyName="app", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return {
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
        }

    @contextmanager
    def enforcing_iam(self) -> Iterator[None]:
        """moto checks every call against IAM (per action: moto has no per-secret check)."""
        requests.post(f"{self.url}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()
        try:
            yield
        finally:
            requests.post(f"{self.url}/moto-api/reset-auth", data=b"inf", timeout=10)


@pytest.fixture(scope="session")
def aws_server() -> Iterator[AwsServer]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = AwsServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


AWS_VARIABLES_TO_CLEAR = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    "AWS_ENDPOINT_URL_SSM",
    "AWS_MAX_ATTEMPTS",
    "AWS_RETRY_MODE",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
)


def aws_environment(server: AwsServer, home: Path) -> dict[str, str]:
    """Variables that point boto3 at ``server`` and at nothing of this machine's."""
    return {
        "HOME": str(home),
        "AWS_ACCESS_KEY_ID": ADMIN_KEY,
        "AWS_SECRET_ACCESS_KEY": ADMIN_SECRET,
        # botocore reads AWS_DEFAULT_REGION; AWS_REGION is what users set.
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": server.url,
        "AWS_CONFIG_FILE": str(home / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-credentials"),
        # No probing of an instance metadata service when credentials are missing.
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@pytest.fixture(autouse=True)
def aws_env(
    aws_server: AwsServer, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """Every test talks to the suite's server with throwaway credentials."""
    for name in AWS_VARIABLES_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    env = aws_environment(aws_server, isolated_home)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    aws_server.reset()
    yield env
    aws_server.reset()


@pytest.fixture
def unique() -> str:
    """A prefix no other test uses: the server is shared, never reset (SSM's reset is slow)."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def sm(aws_server: AwsServer) -> Any:
    """A Secrets Manager client for planting secrets."""
    return aws_server.admin("secretsmanager")


@pytest.fixture
def ssm(aws_server: AwsServer) -> Any:
    """A Parameter Store client for planting parameters."""
    return aws_server.admin("ssm")


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: connections to it are refused."""
    return free_port()
