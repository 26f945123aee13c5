"""The core's provider contract, through the real SDK to the fake Key Vault."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping

import pytest
from secretinit_azure import AzureKeyVaultProvider
from secretinit_azure.testing import FakeKeyVault

from secretinit import SecretRef, parse_reference
from secretinit.testing import ProviderContract


class AzureStore:
    """Plants secrets the way ``az keyvault secret set`` stores them."""

    def __init__(self, vault: FakeKeyVault) -> None:
        self.vault = vault

    def provider(self) -> AzureKeyVaultProvider:
        return AzureKeyVaultProvider("azure-kv", {"verify_challenge_resource": False})

    def ref(self, name: str) -> SecretRef:
        return parse_reference(f"azure-kv://{self.vault.host}/{name}")

    def plant(self, name: str, value: bytes) -> SecretRef:
        try:
            self.vault.set_secret(name, value.decode("utf-8"))
        except UnicodeDecodeError:
            # Key Vault holds text: a binary file goes in as base64, tagged as
            # `az keyvault secret set --file F --encoding base64` tags it.
            encoded = base64.b64encode(value).decode()
            self.vault.set_secret(name, encoded, tags={"file-encoding": "base64"})
        return self.ref(name)

    def plant_document(self, name: str, document: Mapping[str, str]) -> SecretRef:
        self.vault.set_secret(name, json.dumps(document), content_type="application/json")
        return self.ref(name)

    def missing(self, name: str) -> SecretRef:
        return self.ref(name)

    def denied(self, name: str) -> SecretRef:
        self.vault.set_secret(name, "not-for-you")
        self.vault.deny(name)
        return self.ref(name)


class TestAzureKeyVaultContract(ProviderContract):
    """Binary values pass as base64 tagged ``file-encoding=base64`` (the Azure CLI's way)."""

    supports_binary = True

    @pytest.fixture
    def store(self, fake_vault: FakeKeyVault, azure_env: dict[str, str]) -> AzureStore:
        return AzureStore(fake_vault)
