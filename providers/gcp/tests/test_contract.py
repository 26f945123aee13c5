"""The core's provider contract, through the real client library to the fake, both transports."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest
from secretinit_gcp import SecretManagerProvider
from secretinit_gcp.testing import FakeSecretManager

from secretinit import SecretRef, parse_reference
from secretinit.testing import ProviderContract


class SecretManagerStore:
    """Plants secrets as ``gcloud secrets versions add`` stores them: bytes, as they are."""

    def __init__(self, fake: FakeSecretManager, transport: str) -> None:
        self.fake = fake
        self.transport = transport

    def provider(self) -> SecretManagerProvider:
        return SecretManagerProvider("gcp-sm", self.fake.provider_options(self.transport))

    def ref(self, name: str) -> SecretRef:
        return parse_reference(f"gcp-sm://projects/{self.fake.project}/secrets/{name}")

    def plant(self, name: str, value: bytes) -> SecretRef:
        self.fake.add_version(name, value)
        return self.ref(name)

    def plant_document(self, name: str, document: Mapping[str, str]) -> SecretRef:
        self.fake.add_version(name, json.dumps(document).encode())
        return self.ref(name)

    def missing(self, name: str) -> SecretRef:
        return self.ref(name)

    def denied(self, name: str) -> SecretRef:
        self.fake.add_version(name, b"not-for-you")
        self.fake.deny(name)
        return self.ref(name)


@pytest.mark.usefixtures("gcp_env")
class TestSecretManagerOverRest(ProviderContract):
    """``[providers.gcp] transport = "rest"``, against the fake's REST API."""

    @pytest.fixture
    def store(self, fake: FakeSecretManager) -> SecretManagerStore:
        return SecretManagerStore(fake, "rest")


@pytest.mark.usefixtures("gcp_env")
class TestSecretManagerOverGrpc(ProviderContract):
    """The default transport, ``grpc``, against the fake's gRPC service."""

    @pytest.fixture
    def store(self, fake: FakeSecretManager) -> SecretManagerStore:
        return SecretManagerStore(fake, "grpc")
