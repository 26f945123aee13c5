"""The core's contract, on KV version 2 (``secret/``) and KV version 1 (``kv1/``)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from secretinit_vault import VaultProvider

from secretinit import SecretRef
from secretinit.testing import ProviderContract


class VaultStore:
    """Plants secrets in one KV mount of the shared server, read with a reader token.

    Vault stores strings: text is planted as it is and read with ``#value``;
    bytes that are not UTF-8 are planted base64-encoded and read with
    ``#value?encoding=base64``, the documented way to keep a binary secret.
    """

    def __init__(self, bao: Any, mount: str, token: str, home: Path) -> None:
        self.bao, self.mount, self.token, self.home = bao, mount, token, home

    def provider(self) -> VaultProvider:
        return self.bao.provider(self.bao.environ(self.home, self.token))

    def _path(self, name: str, folder: str = "contract") -> str:
        return f"{self.mount}/{folder}/{name}-{uuid.uuid4().hex[:10]}"

    def plant(self, name: str, value: bytes) -> SecretRef:
        path = self._path(name)
        try:
            self.bao.put(path, {"value": value.decode("utf-8")})
            return SecretRef("vault", path, "value")
        except UnicodeDecodeError:
            self.bao.put(path, {"value": base64.b64encode(value).decode()})
            return SecretRef("vault", path, "value", (("encoding", "base64"),))

    def plant_document(self, name: str, document: Mapping[str, str]) -> SecretRef:
        path = self._path(name)
        self.bao.put(path, document)
        return SecretRef("vault", path)

    def missing(self, name: str) -> SecretRef:
        return SecretRef("vault", self._path(name), "value")

    def denied(self, name: str) -> SecretRef:
        path = self._path(name, folder="denied")
        self.bao.put(path, {"value": "denied-value"})
        return SecretRef("vault", path, "value")


class TestKV2(ProviderContract):
    @pytest.fixture
    def store(self, bao: Any, reader: str, home: Path) -> VaultStore:
        return VaultStore(bao, "secret", reader, home)


class TestKV1(ProviderContract):
    @pytest.fixture
    def store(self, bao: Any, reader: str, home: Path) -> VaultStore:
        return VaultStore(bao, "kv1", reader, home)
