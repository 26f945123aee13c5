"""The contract every provider passes, shipped so that third parties can run it too.

A provider's tests subclass :class:`ProviderContract` and supply one fixture,
``store``, returning a :class:`SecretStore`: an object that plants secrets in
a real backend (a server the test suite started, a directory) and builds the
provider under test pointed at it::

    class TestMyProvider(ProviderContract):
        @pytest.fixture
        def store(self, my_server):
            return MyStore(my_server)

Capabilities a backend lacks are declared as class attributes
(``supports_binary = False`` for a store of text); the tests that need them
are then skipped with that reason, and every other test must pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar, Protocol

import pytest

from secretinit._errors import AccessDenied, BadReference, FetchError, NotFound
from secretinit._provider import Provider
from secretinit._reference import SecretRef

__all__ = ["ProviderContract", "SecretStore"]

TIMEOUT = 20.0
BATCH_SIZE = 50


class SecretStore(Protocol):
    """A real backend the contract can plant secrets in."""

    def provider(self) -> Provider:
        """A provider, built as the core builds it, that reads this backend."""

    def plant(self, name: str, value: bytes) -> SecretRef:
        """Store ``value`` under a name derived from ``name``; return its reference."""

    def plant_document(self, name: str, document: Mapping[str, str]) -> SecretRef:
        """Store a JSON object (or a store's own key/value map); return its reference
        without ``#KEY``: the contract adds one."""

    def missing(self, name: str) -> SecretRef:
        """A reference to a secret that does not exist."""

    def denied(self, name: str) -> SecretRef:
        """A reference to a secret that exists but which the provider may not read."""


class ProviderContract:
    """The cases every provider must pass (round trip, errors, batches, keys)."""

    supports_binary: ClassVar[bool] = True
    supports_documents: ClassVar[bool] = True
    supports_denied: ClassVar[bool] = True

    @pytest.fixture
    def store(self) -> SecretStore:
        raise NotImplementedError("a provider's contract tests supply the 'store' fixture")

    @staticmethod
    def fetch(provider: Provider, refs: Sequence[SecretRef]) -> dict[SecretRef, bytes | FetchError]:
        for ref in refs:
            provider.check_reference(ref)
        result = dict(provider.fetch(list(dict.fromkeys(refs)), TIMEOUT))
        assert set(result) == set(refs), "a provider returns exactly one result per reference"
        return result

    def fetch_one(self, store: SecretStore, ref: SecretRef) -> bytes | FetchError:
        provider = store.provider()
        try:
            return self.fetch(provider, [ref])[ref]
        finally:
            provider.close()

    def test_round_trip(self, store: SecretStore) -> None:
        value = b"correct-horse-battery-staple"
        assert self.fetch_one(store, store.plant("round-trip", value)) == value

    def test_unicode(self, store: SecretStore) -> None:
        value = "pässwörd-密码-🔑 with spaces".encode()
        assert self.fetch_one(store, store.plant("unicode", value)) == value

    def test_binary(self, store: SecretStore) -> None:
        if not self.supports_binary:
            pytest.skip(f"{type(self).__name__} stores text only")
        value = bytes(range(256)) + b"\x00\xff\r\n"
        assert self.fetch_one(store, store.plant("binary", value)) == value

    def test_missing(self, store: SecretStore) -> None:
        result = self.fetch_one(store, store.missing("missing"))
        assert isinstance(result, NotFound), result
        assert not result.transient

    def test_denied(self, store: SecretStore) -> None:
        if not self.supports_denied:
            pytest.skip(f"{type(self).__name__} has no access control to exercise")
        result = self.fetch_one(store, store.denied("denied"))
        assert isinstance(result, AccessDenied), result
        assert not result.transient

    def test_key_of_document(self, store: SecretStore) -> None:
        if not self.supports_documents:
            pytest.skip(f"{type(self).__name__} has no structured documents")
        ref = store.plant_document("document", {"username": "app", "password": "hunter2-Ω"})
        provider = store.provider()
        try:
            result = self.fetch(
                provider,
                [
                    ref._replace(key="password"),
                    ref._replace(key="username"),
                ],
            )
        finally:
            provider.close()
        assert result[ref._replace(key="password")] == "hunter2-Ω".encode()
        assert result[ref._replace(key="username")] == b"app"

    def test_missing_key_names_key_not_values(self, store: SecretStore) -> None:
        if not self.supports_documents:
            pytest.skip(f"{type(self).__name__} has no structured documents")
        ref = store.plant_document("no-key", {"password": "value-that-must-not-leak"})
        result = self.fetch_one(store, ref._replace(key="absent"))
        assert isinstance(result, NotFound), result
        assert "absent" in str(result)
        assert "value-that-must-not-leak" not in f"{result} {result!r}"

    def test_batch(self, store: SecretStore) -> None:
        planted = {
            store.plant(f"batch-{i}", f"value-{i}".encode()): f"value-{i}".encode()
            for i in range(BATCH_SIZE)
        }
        missing = store.missing("batch-missing")
        provider = store.provider()
        try:
            result = self.fetch(provider, [*planted, missing])
        finally:
            provider.close()
        assert {ref: result[ref] for ref in planted} == planted
        assert isinstance(result[missing], NotFound)

    def test_errors_never_hold_values(self, store: SecretStore) -> None:
        secret = b"leak-canary-7f3a9c"
        refs = [store.plant("canary", secret), store.missing("canary-missing")]
        if self.supports_documents:
            document = store.plant_document("canary-doc", {"k": secret.decode()})
            refs.append(document._replace(key="nope"))
        if self.supports_denied:
            refs.append(store.denied("canary-denied"))
        provider = store.provider()
        try:
            result = self.fetch(provider, refs)
        finally:
            provider.close()
        text = " ".join(f"{r} {r!r}" for r in result.values() if isinstance(r, FetchError))
        assert secret.decode() not in text
        assert secret.decode() not in repr(provider)

    def test_unknown_reference_option_is_refused(self, store: SecretStore) -> None:
        ref = store.missing("option")._replace(options=(("no-such-option", "1"),))
        provider = store.provider()
        try:
            with pytest.raises(BadReference, match="no-such-option"):
                provider.check_reference(ref)
        finally:
            provider.close()
