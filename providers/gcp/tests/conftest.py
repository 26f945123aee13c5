"""The Secret Manager tests' fake, and an environment that points google-auth and the client at it.

The fake (``secretinit_gcp.testing``) runs in this process on free loopback
ports; it cannot be missing, so no test here ever skips for want of a server.
It lives for the whole session: google-auth reads ``GCE_METADATA_HOST`` once,
when ``google.auth.compute_engine`` is first imported, so the metadata server
must keep one address for every test of a run. Each test starts from a
:meth:`~secretinit_gcp.testing.FakeSecretManager.reset` fake.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from secretinit_gcp.testing import FakeSecretManager, make_certificates

LOCATIONS = ("us-central1", "europe-west1")
# Variables through which google-auth or gcloud would find a real identity,
# project or endpoint of the machine running the tests: none may leak in.
_PREFIXES = ("GOOGLE_", "GCE_", "GCLOUD_", "CLOUDSDK_", "GRPC_")


@pytest.fixture(scope="session")
def session_fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeSecretManager]:
    """One fake for the session, its metadata server's address in this process's environment."""
    certificates = make_certificates(tmp_path_factory.mktemp("gcp-ca"))
    with FakeSecretManager(certificates, locations=LOCATIONS, grpc=True) as fake:
        metadata = sys.modules.get("google.auth.compute_engine._metadata")
        if metadata is not None and fake.metadata_host not in metadata._GCE_METADATA_HOST:
            pytest.fail(
                "google.auth.compute_engine was imported before the fake metadata server "
                "started: it would keep another address (import it lazily in tests)"
            )
        # gRPC, too, reads its default roots once per process.
        session_variables = {
            "GCE_METADATA_HOST": fake.metadata_host,
            "GCE_METADATA_IP": fake.metadata_host,
            "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(certificates.ca),
        }
        with pytest.MonkeyPatch.context() as patch:
            for name, value in session_variables.items():
                patch.setenv(name, value)
            yield fake


@pytest.fixture
def fake(session_fake: FakeSecretManager) -> FakeSecretManager:
    """The session's fake, reset: no secret, no token, no request seen."""
    session_fake.reset()
    return session_fake


@pytest.fixture
def gcp_env(
    fake: FakeSecretManager, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """This process's environment pointed at ``fake``; returns the variables set."""
    for name in list(os.environ):
        if name.startswith(_PREFIXES):
            monkeypatch.delenv(name)
    variables = fake.environment(str(isolated_home))
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return variables
