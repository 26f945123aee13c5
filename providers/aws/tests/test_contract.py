"""Both AWS providers pass the core's contract, against moto over HTTP."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest
from secretinit_aws import ParameterStoreProvider, SecretsManagerProvider

from secretinit import AccessDenied, Provider, SecretRef
from secretinit.testing import ProviderContract

# moto checks IAM per action, never per resource (its Secrets Manager and SSM
# hand "*" to the policy check), so no credential can read one secret and be
# refused another: the contract's mixed batch of readable and denied secrets
# cannot be built honestly (supports_denied = False). test_denied is replaced
# by the honest half: moto enforcing a real IAM policy on real signed
# requests refuses a secret that exists. test_secretsmanager.py and
# test_ssm.py cover the rest of the mapping.
NO_PER_SECRET_DENIAL = "moto has no per-secret access control (IAM is checked per action)"


class DeniedByIam(ProviderContract):
    """The contract, with test_denied through a credential whose IAM policy allows nothing."""

    def test_denied(
        self, store: Any, aws_server: Any, unique: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        ref = store.plant("denied", b"denied-value-3c1e")
        for name, value in aws_server.iam_user(f"{unique}-nobody", []).items():
            monkeypatch.setenv(name, value)
        with aws_server.enforcing_iam():
            result = self.fetch_one(store, ref)
        assert isinstance(result, AccessDenied), result
        assert not result.transient
        assert "denied-value-3c1e" not in f"{result} {result!r}"


class SecretsManagerStore:
    """Plants secrets in moto's Secrets Manager: text as SecretString, else SecretBinary."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def provider(self) -> Provider:
        return SecretsManagerProvider("aws-sm")

    def plant(self, name: str, value: bytes) -> SecretRef:
        full = f"{self.prefix}/{name}"
        try:
            self.client.create_secret(Name=full, SecretString=value.decode("utf-8"))
        except UnicodeDecodeError:
            self.client.create_secret(Name=full, SecretBinary=value)
        return SecretRef("aws-sm", full)

    def plant_document(self, name: str, document: Mapping[str, str]) -> SecretRef:
        return self.plant(name, json.dumps(document).encode())

    def missing(self, name: str) -> SecretRef:
        return SecretRef("aws-sm", f"{self.prefix}/{name}")

    def denied(self, name: str) -> SecretRef:
        raise NotImplementedError(NO_PER_SECRET_DENIAL)


class ParameterStoreStore:
    """Plants SecureString parameters in moto's Parameter Store."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def provider(self) -> Provider:
        return ParameterStoreProvider("aws-ssm")

    def plant(self, name: str, value: bytes) -> SecretRef:
        full = f"/{self.prefix}/{name}"
        self.client.put_parameter(Name=full, Value=value.decode("utf-8"), Type="SecureString")
        return SecretRef("aws-ssm", full)

    def plant_document(self, name: str, document: Mapping[str, str]) -> SecretRef:
        return self.plant(name, json.dumps(document).encode())

    def missing(self, name: str) -> SecretRef:
        return SecretRef("aws-ssm", f"/{self.prefix}/{name}")

    def denied(self, name: str) -> SecretRef:
        raise NotImplementedError(NO_PER_SECRET_DENIAL)


class TestSecretsManagerContract(DeniedByIam):
    supports_denied: ClassVar[bool] = False

    @pytest.fixture
    def store(self, sm: Any, unique: str) -> SecretsManagerStore:
        return SecretsManagerStore(sm, unique)


class TestParameterStoreContract(DeniedByIam):
    supports_denied: ClassVar[bool] = False
    supports_binary: ClassVar[bool] = False  # a parameter's value is text

    @pytest.fixture
    def store(self, ssm: Any, unique: str) -> ParameterStoreStore:
        return ParameterStoreStore(ssm, unique)
