"""The azure-kv provider through the real SDK to the fake Key Vault: reads, keys, errors."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from secretinit_azure import AzureKeyVaultProvider, vault_url
from secretinit_azure.testing import FakeKeyVault

from secretinit import (
    AccessDenied,
    BadReference,
    ConfigError,
    FetchError,
    NotFound,
    SecretRef,
    Throttled,
    Unreachable,
    parse_reference,
)
from secretinit._resolve import fetch_with_retries
from secretinit.testing.ports import free_port

pytestmark = pytest.mark.usefixtures("azure_env")
LOCAL = {"verify_challenge_resource": False}


@pytest.fixture
def provider() -> Iterator[AzureKeyVaultProvider]:
    built = AzureKeyVaultProvider("azure-kv", LOCAL)
    yield built
    built.close()


def ref(vault: FakeKeyVault, path: str, host: str | None = None) -> SecretRef:
    return parse_reference(f"azure-kv://{host or vault.host}/{path}")


def fetch(
    provider: AzureKeyVaultProvider, refs: Sequence[SecretRef], timeout: float = 20
) -> dict[SecretRef, bytes | FetchError]:
    for reference in refs:
        provider.check_reference(reference)
    result = dict(provider.fetch(list(dict.fromkeys(refs)), timeout))
    assert set(result) == set(refs)
    return result


def fetch_one(
    provider: AzureKeyVaultProvider, reference: SecretRef, timeout: float = 20
) -> bytes | FetchError:
    return fetch(provider, [reference], timeout)[reference]


# References.

GOOD_REFERENCES = [
    "azure-kv://myvault/db-password",
    "azure-kv://my-vault-01/DB-Password/0123456789abcdef0123456789ABCDEF",
    "azure-kv://myvault.vault.azure.cn/name",
    "azure-kv://myvault.vault.usgovcloudapi.net/name#key",
    "azure-kv://kv.privatelink.example.internal:8443/name?encoding=base64",
    "azure-kv://127.0.0.1:8443/name?encoding=hex",
]
BAD_REFERENCES = [
    ("azure-kv://myvault", "the secret NAME is missing"),
    ("azure-kv://myvault/", "the secret NAME is missing"),
    ("azure-kv://kv/name", "not a Key Vault name"),
    ("azure-kv://1vault/name", "not a Key Vault name"),
    ("azure-kv://my--vault/name", "not a Key Vault name"),
    ("azure-kv://vault-/name", "not a Key Vault name"),
    ("azure-kv://a" + "b" * 24 + "/name", "not a Key Vault name"),
    ("azure-kv://my_vault.example/name", "not a valid Key Vault host"),
    ("azure-kv://host.example:99999/name", "not a valid Key Vault host"),
    ("azure-kv://host..example/name", "not a valid Key Vault host"),
    ("azure-kv://" + "a." * 60 + "_/name", "not a valid Key Vault host"),
    ("azure-kv://myvault/db_password", "1-127 letters, digits and hyphens"),
    ("azure-kv://myvault/" + "n" * 128, "1-127 letters, digits and hyphens"),
    ("azure-kv://myvault/name/v1", "not 32 hexadecimal digits"),
    ("azure-kv://myvault/name/", "not 32 hexadecimal digits"),
    ("azure-kv://myvault/name/" + "0" * 32 + "/more", "not 32 hexadecimal digits"),
    ("azure-kv://myvault/name?encoding=utf-16", "encoding must be one of"),
    ("azure-kv://myvault/name?version=1", "does not accept option 'version'"),
]


@pytest.mark.parametrize("text", GOOD_REFERENCES)
def test_good_references_are_accepted(provider: AzureKeyVaultProvider, text: str) -> None:
    provider.check_reference(parse_reference(text))


@pytest.mark.parametrize(("text", "message"), BAD_REFERENCES)
def test_bad_references_say_why(provider: AzureKeyVaultProvider, text: str, message: str) -> None:
    with pytest.raises(BadReference, match=message):
        provider.check_reference(parse_reference(text))


@pytest.mark.parametrize(
    ("location", "url"),
    [
        ("myvault/name", "https://myvault.vault.azure.net"),
        ("MyVault/name", "https://myvault.vault.azure.net"),
        ("myvault.vault.azure.cn/name", "https://myvault.vault.azure.cn"),
        (
            "myvault.vault.usgovcloudapi.net/n/" + "a" * 32,
            "https://myvault.vault.usgovcloudapi.net",
        ),
        ("kv.internal.example:8443/name", "https://kv.internal.example:8443"),
    ],
)
def test_vault_names_and_hosts_make_the_vault_url(location: str, url: str) -> None:
    assert vault_url(location) == url


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"credential": "password"}, r"\[providers.azure\] credential: must be one of"),
        ({"ca_bundle": "/nonexistent/ca.pem"}, r"\[providers.azure\] ca_bundle: '/nonexistent"),
        ({"concurrency": 0}, "positive number"),
        ({"concurrency": 2.5}, "whole number"),
        ({"verify_challenge_resource": "no"}, "true or false"),
        ({"tenant": "x"}, r"\[providers.azure\] 'tenant' is not an option of azure \(accepted: "),
    ],
)
def test_bad_options_are_config_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AzureKeyVaultProvider("azure-kv", options)


# Reading.


def test_latest_version_and_an_older_one(
    fake_vault: FakeKeyVault, provider: AzureKeyVaultProvider
) -> None:
    first = fake_vault.set_secret("api-key", "first-value")
    fake_vault.set_secret("api-key", "second-value")
    older = ref(fake_vault, f"api-key/{first}")
    unknown = ref(fake_vault, "api-key/" + "f" * 32)
    result = fetch(provider, [ref(fake_vault, "api-key"), older, unknown])
    assert result[ref(fake_vault, "api-key")] == b"second-value"
    assert result[older] == b"first-value"
    missing = result[unknown]
    assert isinstance(missing, NotFound)
    assert not missing.transient
    assert "f" * 32 in str(missing)


def test_keys_of_one_secret_are_read_once(
    fake_vault: FakeKeyVault, provider: AzureKeyVaultProvider
) -> None:
    fake_vault.set_secret("db", json.dumps({"user": "app", "password": "pw-Ω", "port": 5432}))
    whole, user, password, port = (
        ref(fake_vault, "db"),
        ref(fake_vault, "db#user"),
        ref(fake_vault, "db#password"),
        ref(fake_vault, "db#port"),
    )
    absent = ref(fake_vault, "db#absent")
    result = fetch(provider, [whole, user, password, port, absent])
    assert json.loads(result[whole]) == {"user": "app", "password": "pw-Ω", "port": 5432}  # type: ignore[arg-type]
    assert result[user] == b"app"
    assert result[password] == "pw-Ω".encode()
    assert result[port] == b"5432"
    assert isinstance(result[absent], NotFound)
    assert "absent" in str(result[absent])
    answered = [path for path, status in fake_vault.requests if status == 200]
    assert answered == ["/secrets/db/"]


def test_key_of_a_value_that_is_not_json(
    fake_vault: FakeKeyVault, provider: AzureKeyVaultProvider
) -> None:
    fake_vault.set_secret("plain", "just-text-value")
    result = fetch_one(provider, ref(fake_vault, "plain#key"))
    assert isinstance(result, NotFound)
    assert "not a JSON object" in str(result)
    assert "just-text-value" not in str(result)


def test_batch_of_50_fetches_one_token(
    fake_vault: FakeKeyVault, provider: AzureKeyVaultProvider
) -> None:
    refs = []
    for i in range(50):
        fake_vault.set_secret(f"secret-{i}", f"value-{i}")
        refs.append(ref(fake_vault, f"secret-{i}"))
    result = fetch(provider, refs)
    assert result == {r: f"value-{i}".encode() for i, r in enumerate(refs)}
    assert fake_vault.tokens_issued == 1
    # One challenge (401) for the whole batch, then one read per secret.
    statuses = [status for _path, status in fake_vault.requests]
    assert statuses.count(401) == 1
    assert statuses.count(200) == 50
    # The core calls fetch again to retry; the token is reused.
    assert fetch_one(provider, refs[0]) == b"value-0"
    assert fake_vault.tokens_issued == 1


def test_one_token_for_two_vaults_read_at_once(
    fake_vault: FakeKeyVault, provider: AzureKeyVaultProvider
) -> None:
    # The fake answers as 127.0.0.1:PORT and localhost:PORT: two vault URLs,
    # two clients, two challenges, whose first reads start together.
    fake_vault.set_secret("one", "value-one")
    fake_vault.set_secret("two", "value-two")
    refs = [ref(fake_vault, "one"), ref(fake_vault, "two", host=f"localhost:{fake_vault.port}")]
    result = fetch(provider, refs)
    assert list(result.values()) == [b"value-one", b"value-two"]
    assert fake_vault.tokens_issued == 1
    assert [s for _p, s in fake_vault.requests].count(401) == 2


# Binary values: Key Vault holds text, so bytes travel encoded.


def test_binary_by_tag_option_and_hex(
    fake_vault: FakeKeyVault, provider: AzureKeyVaultProvider
) -> None:
    data = bytes(range(256))
    fake_vault.set_secret(
        "tagged", base64.b64encode(data).decode(), tags={"file-encoding": "base64"}
    )
    # `base64` wraps its output at 76 columns; the newlines are not content.
    wrapped = base64.encodebytes(data).decode()
    fake_vault.set_secret("untagged", wrapped)
    fake_vault.set_secret("hexed", data.hex(), tags={"file-encoding": "hex"})
    fake_vault.set_secret("text", "dGV4dA==", tags={"file-encoding": "utf-8"})
    result = fetch(
        provider,
        [
            tagged := ref(fake_vault, "tagged"),
            as_text := ref(fake_vault, "tagged?encoding=utf-8"),
            untagged := ref(fake_vault, "untagged?encoding=base64"),
            hexed := ref(fake_vault, "hexed"),
            text := ref(fake_vault, "text"),
        ],
    )
    assert result[tagged] == data
    assert result[as_text] == base64.b64encode(data)
    assert result[untagged] == data
    assert result[hexed] == data
    assert result[text] == b"dGV4dA=="


def test_value_that_is_not_valid_base64(
    fake_vault: FakeKeyVault, provider: AzureKeyVaultProvider
) -> None:
    fake_vault.set_secret("broken", "not*base64*canary-91c2")
    result = fetch_one(provider, ref(fake_vault, "broken?encoding=base64"))
    assert isinstance(result, FetchError)
    assert not result.transient
    assert "not valid base64 (?encoding=base64)" in str(result)
    assert "canary-91c2" not in str(result)


# Failing.


def test_missing_denied_and_disabled_are_permanent_and_say_which(
    fake_vault: FakeKeyVault, provider: AzureKeyVaultProvider
) -> None:
    fake_vault.set_secret("denied", "denied-value-canary")
    fake_vault.deny("denied")
    fake_vault.set_secret("disabled", "disabled-value-canary", enabled=False)
    fake_vault.set_secret("fine", "fine-value")
    refs = [ref(fake_vault, n) for n in ("missing", "denied", "disabled", "fine")]
    result = fetch(provider, refs)
    missing, denied, disabled, fine = (result[r] for r in refs)
    assert isinstance(missing, NotFound)
    assert "Key Vault secret missing" in str(missing)
    assert "SecretNotFound" in str(missing)
    assert isinstance(denied, AccessDenied)
    assert "Key Vault secret denied" in str(denied)
    assert "403 AccessDenied" in str(denied)
    assert "does not have secrets get permission" in str(denied)
    assert isinstance(disabled, AccessDenied)
    assert "Key Vault secret disabled" in str(disabled)
    assert "is disabled (403 SecretDisabled)" in str(disabled)
    assert fine == b"fine-value"
    for error in (missing, denied, disabled):
        assert not error.transient
        assert "canary" not in f"{error} {error!r}"


@pytest.mark.parametrize(("status", "retry_after"), [(429, 3), (503, None), (500, None)])
def test_throttling_and_server_errors_are_transient(
    fake_vault: FakeKeyVault, provider: AzureKeyVaultProvider, status: int, retry_after: int | None
) -> None:
    fake_vault.set_secret("busy", "busy-value")
    fake_vault.fault("busy", status, times=1, retry_after=retry_after)
    result = fetch_one(provider, ref(fake_vault, "busy"))
    assert isinstance(result, Throttled if status == 429 else Unreachable)
    assert result.transient
    assert str(status) in str(result)
    if retry_after:
        assert isinstance(result, Throttled)
        assert result.retry_after == retry_after
        assert f"Retry-After {retry_after} s" in str(result)


def test_retry_after_is_honoured_within_the_deadline(
    fake_vault: FakeKeyVault, provider: AzureKeyVaultProvider
) -> None:
    fake_vault.set_secret("busy", "busy-value")
    busy = ref(fake_vault, "busy")
    provider.check_reference(busy)
    assert fetch_one(provider, busy) == b"busy-value"  # the token, fetched before the test
    # A retry whose deadline ends before Retry-After does not knock again.
    fake_vault.fault("busy", 429, times=2, retry_after=2)
    sent = len(fake_vault.requests)
    early = fetch_with_retries(provider, [busy], time.monotonic() + 1.5)[busy]
    assert isinstance(early, Throttled), early
    assert "the store asked to wait 2 s, past the deadline" in str(early)
    assert len(fake_vault.requests) == sent + 1
    # One with time to wait waits, then reads.
    started = time.monotonic()
    assert fetch_with_retries(provider, [busy], started + 20) == {busy: b"busy-value"}
    assert time.monotonic() - started >= 2  # never sooner than Retry-After
    assert len(fake_vault.requests) == sent + 3


@pytest.mark.parametrize("first_throttled", [True, False])
def test_a_throttled_vault_gets_no_more_requests_in_the_fetch(
    fake_vault: FakeKeyVault, first_throttled: bool
) -> None:
    names = [f"many-{i}" for i in range(6)]
    for name in names:
        fake_vault.set_secret(name, f"value-{name}")
    refs = [ref(fake_vault, name) for name in names]
    provider = AzureKeyVaultProvider("azure-kv", {**LOCAL, "concurrency": 1})
    try:
        assert fetch_one(provider, refs[0]) == b"value-many-0"  # the token, before the test
        for name in names if first_throttled else names[1:]:
            fake_vault.fault(name, 429, times=1, retry_after=1)
        sent = len(fake_vault.requests)
        result = fetch(provider, refs)
    finally:
        provider.close()
    throttled = refs if first_throttled else refs[1:]
    assert all(isinstance(result[r], Throttled) for r in throttled), result
    # The first read alone, then (when it passed) the rest until the first 429: no more.
    assert len(fake_vault.requests) == sent + (1 if first_throttled else 2)


def test_a_vault_that_is_not_listening_is_unreachable(provider: AzureKeyVaultProvider) -> None:
    closed = parse_reference(f"azure-kv://127.0.0.1:{free_port()}/name")
    result = fetch(provider, [closed, parse_reference(f"{closed}-2")])
    for error in result.values():
        assert isinstance(error, Unreachable)
        assert "Connection refused" in str(error)


def test_a_slow_vault_does_not_hold_fetch_past_its_timeout(
    fake_vault: FakeKeyVault, provider: AzureKeyVaultProvider
) -> None:
    fake_vault.set_secret("slow", "slow-value")
    assert fetch_one(provider, ref(fake_vault, "slow")) == b"slow-value"  # token and challenge
    fake_vault.latency = 5
    started = time.monotonic()
    result = fetch_one(provider, ref(fake_vault, "slow"), timeout=0.5)
    # Generous slack for a loaded machine; the point is 0.5 s, not the fake's 5 s.
    assert time.monotonic() - started < 3
    assert isinstance(result, Unreachable)


def test_an_untrusted_certificate_is_permanent_and_names_the_fix(
    fake_vault: FakeKeyVault, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_vault.set_secret("name", "value")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    provider = AzureKeyVaultProvider("azure-kv", LOCAL)
    try:
        result = fetch_one(provider, ref(fake_vault, "name"))
    finally:
        provider.close()
    assert isinstance(result, FetchError)
    assert not result.transient
    assert "TLS certificate" in str(result)
    assert "ca_bundle" in str(result)


def test_ca_bundle_option(fake_vault: FakeKeyVault, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_vault.set_secret("name", "value")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    options = {**LOCAL, "ca_bundle": str(fake_vault.certificates.ca)}
    provider = AzureKeyVaultProvider("azure-kv", options)
    try:
        assert fetch_one(provider, ref(fake_vault, "name")) == b"value"
    finally:
        provider.close()


def test_challenge_resource_is_verified_by_default(fake_vault: FakeKeyVault) -> None:
    fake_vault.set_secret("name", "value")
    provider = AzureKeyVaultProvider("azure-kv", {})
    try:
        result = fetch_one(provider, ref(fake_vault, "name"))
    finally:
        provider.close()
    assert isinstance(result, FetchError)
    assert not result.transient
    assert "verify_challenge_resource = false" in str(result)
    assert fake_vault.tokens_issued == 0  # no token was sent to a vault outside its domain


@pytest.mark.parametrize("credential", ["default", "managed-identity"])
def test_a_credential_that_fails_is_access_denied(
    fake_vault: FakeKeyVault, monkeypatch: pytest.MonkeyPatch, credential: str
) -> None:
    fake_vault.set_secret("name", "value")
    monkeypatch.setenv("IDENTITY_HEADER", "wrong-identity-header-canary")
    provider = AzureKeyVaultProvider("azure-kv", {**LOCAL, "credential": credential})
    try:
        result = fetch(provider, [ref(fake_vault, "name"), ref(fake_vault, "other")])
    finally:
        provider.close()
    for error in result.values():
        assert isinstance(error, AccessDenied)
        assert not error.transient
        assert f"no token from the {credential} credential" in str(error)
        assert "bad X-IDENTITY-HEADER" in str(error)
        assert "canary" not in str(error)
    # The second read did not ask for a token the first one could not get.
    assert len(fake_vault.identity_requests) == 1


def test_default_credential_with_no_identity_configured(
    fake_vault: FakeKeyVault, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No managed identity variables: DefaultAzureCredential falls through its
    # chain; its instance metadata probe goes to the closed loopback port of
    # AZURE_POD_IDENTITY_AUTHORITY_HOST (see conftest), never to the real address.
    for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER"):
        monkeypatch.delenv(name)
    fake_vault.set_secret("name", "value")
    provider = AzureKeyVaultProvider("azure-kv", LOCAL)
    try:
        result = fetch_one(provider, ref(fake_vault, "name"))
    finally:
        provider.close()
    assert isinstance(result, AccessDenied)
    assert not result.transient
    assert "no token from the default credential" in str(result)
    assert "none of the 9 credentials it tries is configured here" in str(result)
    assert fake_vault.tokens_issued == 0


@pytest.mark.parametrize(
    ("credential", "reason"),
    [
        ("workload-identity", "cannot be used here"),
        ("environment", "EnvironmentCredential authentication unavailable"),
    ],
)
def test_a_pinned_credential_without_its_variables(
    fake_vault: FakeKeyVault, credential: str, reason: str
) -> None:
    fake_vault.set_secret("name", "value")
    provider = AzureKeyVaultProvider("azure-kv", {**LOCAL, "credential": credential})
    try:
        result = fetch_one(provider, ref(fake_vault, "name"))
    finally:
        provider.close()
    assert isinstance(result, AccessDenied)
    assert not result.transient
    assert credential in str(result)
    assert reason in str(result)
    assert fake_vault.tokens_issued == 0


def test_a_token_the_vault_rejects(
    fake_vault: FakeKeyVault, provider: AzureKeyVaultProvider
) -> None:
    fake_vault.set_secret("name", "value")
    assert fetch_one(provider, ref(fake_vault, "name")) == b"value"
    fake_vault.revoke_tokens()
    result = fetch_one(provider, ref(fake_vault, "name"))
    assert isinstance(result, AccessDenied)
    assert "rejected the token of the default credential (401 Unauthorized)" in str(result)
    for token in fake_vault.issued:
        assert token not in f"{result} {result!r}"


def test_user_assigned_managed_identity(
    fake_vault: FakeKeyVault, monkeypatch: pytest.MonkeyPatch
) -> None:
    client_id = "11111111-2222-3333-4444-555555555555"
    monkeypatch.setenv("AZURE_CLIENT_ID", client_id)
    fake_vault.set_secret("name", "value")
    for credential in ("default", "managed-identity"):
        provider = AzureKeyVaultProvider("azure-kv", {**LOCAL, "credential": credential})
        try:
            assert fetch_one(provider, ref(fake_vault, "name")) == b"value"
        finally:
            provider.close()
    assert [q.get("client_id") for q in fake_vault.identity_requests] == [client_id, client_id]


def test_close_releases_clients_and_credential(fake_vault: FakeKeyVault, tmp_path: Path) -> None:
    fake_vault.set_secret("name", "value")
    provider = AzureKeyVaultProvider("azure-kv", LOCAL)
    assert fetch_one(provider, ref(fake_vault, "name")) == b"value"
    provider.close()
    provider.close()  # idempotent: the core closes on every path
    # A closed provider builds new clients if used again (a refresh loop).
    assert fetch_one(provider, ref(fake_vault, "name")) == b"value"
    provider.close()
