"""The Azure tests' fake Key Vault, and an environment that points the SDK at it.

The fake (``secretinit_azure.testing``) is started in this process on free
loopback ports; it cannot be missing, so no test here ever skips for want of
a server.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from secretinit_azure.testing import Certificates, FakeKeyVault, make_certificates

from secretinit.testing.ports import free_port

# Variables through which azure-identity would find a real identity, or a
# real CA bundle: none may leak in from the machine running the tests.
_PREFIXES = ("AZURE_", "IDENTITY_", "MSI_", "IMDS_", "MSAL_")


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A throwaway CA and the fake's server certificate."""
    return make_certificates(tmp_path_factory.mktemp("azure-ca"))


@pytest.fixture
def fake_vault(certificates: Certificates) -> Iterator[FakeKeyVault]:
    """A fresh fake Key Vault (and token endpoint) on free loopback ports."""
    with FakeKeyVault(certificates) as vault:
        yield vault


def azure_environment(vault: FakeKeyVault, home: Path) -> dict[str, str]:
    """The variables that point DefaultAzureCredential and the SDK at ``vault``.

    ``AZURE_POD_IDENTITY_AUTHORITY_HOST`` goes to a closed loopback port, so
    that no code path of azure-identity can probe the real instance metadata
    address (169.254.169.254) from a test.
    """
    return {
        "HOME": str(home),
        "IDENTITY_ENDPOINT": vault.identity_endpoint,
        "IDENTITY_HEADER": vault.identity_header,
        "AZURE_POD_IDENTITY_AUTHORITY_HOST": f"http://127.0.0.1:{free_port()}",
        "REQUESTS_CA_BUNDLE": str(vault.certificates.ca),
    }


@pytest.fixture
def azure_env(
    fake_vault: FakeKeyVault, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """This process's environment pointed at ``fake_vault``; returns the variables set."""
    for name in list(os.environ):
        if name.startswith(_PREFIXES):
            monkeypatch.delenv(name)
    variables = azure_environment(fake_vault, isolated_home)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return variables
