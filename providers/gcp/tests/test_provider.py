"""The gcp-sm and sm providers through the real client library to the fake: reads, names, errors."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from secretinit_gcp import BerglasProvider, SecretManagerProvider
from secretinit_gcp._credentials import describe_source
from secretinit_gcp._names import gcp_sm_target
from secretinit_gcp.testing import FakeSecretManager

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
from secretinit.testing.ports import free_port

pytestmark = pytest.mark.usefixtures("gcp_env")
TRANSPORTS = ["rest", "grpc"]


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def provider(fake: FakeSecretManager, transport: str) -> Iterator[SecretManagerProvider]:
    built = SecretManagerProvider("gcp-sm", fake.provider_options(transport))
    yield built
    built.close()


def fetch(
    provider: SecretManagerProvider, refs: Sequence[SecretRef], timeout: float = 20
) -> dict[SecretRef, bytes | FetchError]:
    for reference in refs:
        provider.check_reference(reference)
    result = dict(provider.fetch(list(dict.fromkeys(refs)), timeout))
    assert set(result) == set(refs)
    return result


def fetch_one(
    provider: SecretManagerProvider, text: str, timeout: float = 20
) -> bytes | FetchError:
    reference = parse_reference(text)
    return fetch(provider, [reference], timeout)[reference]


# References.

GOOD_REFERENCES = [
    "gcp-sm://db-password",
    "gcp-sm://DB_Password-2?version=3",
    "gcp-sm://projects/my-project/secrets/db",
    "gcp-sm://projects/123456789012/secrets/db/versions/7",
    "gcp-sm://projects/example.com:my-project/secrets/db/versions/latest",
    "gcp-sm://projects/my-project/secrets/db/versions/prod-alias#password",
    "gcp-sm://projects/my-project/locations/us-central1/secrets/db",
    "gcp-sm://projects/my-project/locations/europe-west1/secrets/db/versions/2",
]
BAD_REFERENCES = [
    ("gcp-sm://projects/my-project", "'secrets' is missing"),
    ("gcp-sm://projects//secrets/db", "the PROJECT is missing"),
    ("gcp-sm://projects/my-project/secrets", "the SECRET is missing"),
    ("gcp-sm://projects/my-project/secrets/", "the SECRET is missing"),
    ("gcp-sm://projects/my-project/secrets/db/versions", "the VERSION is missing"),
    ("gcp-sm://projects/my-project/secrets/db/versions/1/more", "unexpected 'versions/1/more'"),
    ("gcp-sm://projects/my-project/secrets/db/aliases/x", "unexpected 'aliases/x'"),
    ("gcp-sm://projects/my-project/locations//secrets/db", "the LOCATION is missing"),
    ("gcp-sm://projects/My_Project/secrets/db", "project 'My_Project' is not valid"),
    ("gcp-sm://projects/abc/secrets/db", "project 'abc' is not valid"),
    ("gcp-sm://projects/my-project/locations/US/secrets/db", "location 'US' is not valid"),
    ("gcp-sm://db.password", "secret id 'db.password' is not valid"),
    ("gcp-sm://" + "s" * 256, "is not valid: 1-255 letters"),
    ("gcp-sm://folders/1/secrets/db", "expected gcp-sm://projects/PROJECT"),
    ("gcp-sm://db?version=0", "version '0' is not valid"),
    ("gcp-sm://db?version=-1", "version '-1' is not valid"),
    ("gcp-sm://projects/my-project/secrets/db/versions/2?version=3", "the version is given twice"),
    ("gcp-sm://db?stage=prod", "does not accept option 'stage'"),
]


@pytest.mark.parametrize("text", GOOD_REFERENCES)
def test_good_references_are_accepted(text: str) -> None:
    SecretManagerProvider("gcp-sm").check_reference(parse_reference(text))


@pytest.mark.parametrize(("text", "message"), BAD_REFERENCES)
def test_bad_references_say_why(text: str, message: str) -> None:
    with pytest.raises(BadReference, match=message.replace("?", r"\?").replace(".", r"\.")):
        SecretManagerProvider("gcp-sm").check_reference(parse_reference(text))


@given(st.text(alphabet="projects/locin-egsvr0123456789_.:ABC", max_size=80))
def test_any_location_parses_or_says_why(location: str) -> None:
    try:
        target = gcp_sm_target(SecretRef("gcp-sm", location))
    except BadReference as err:
        assert str(err)
        return
    name = target.name("default-project")
    assert name.startswith("projects/")
    assert name.endswith(f"/secrets/{target.secret}/versions/{target.version}")
    if "/" in location:
        assert name.startswith(location)  # a full name is read as it is written


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sm://my-project", "expected sm://PROJECT/SECRET"),
        ("sm://my-project/a/b", "expected sm://PROJECT/SECRET"),
        ("sm://MyProject/db", "project 'MyProject' is not valid"),
        ("sm://my-project/db#v1.0", "version 'v1.0' is not valid"),
        ("sm://my-project/db?destination=tempfile", "drop berglas' \\?destination="),
    ],
)
def test_bad_berglas_references_say_why(text: str, message: str) -> None:
    with pytest.raises(BadReference, match=message):
        BerglasProvider("sm").check_reference(parse_reference(text))


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"transport": "http"}, "transport must be one of grpc, rest, not 'http'"),
        ({"concurrency": 2.5}, "concurrency must be a whole number"),
        ({"concurrency": 0}, "concurrency must be a positive number"),
        ({"project": 7}, "project must be a string"),
        ({"credentials": "x"}, "'credentials' is not an option of gcp"),
    ],
)
def test_bad_options_say_why(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SecretManagerProvider("gcp-sm", table)


# Reads.


def test_versions_keys_and_binary(fake: FakeSecretManager, provider: SecretManagerProvider) -> None:
    fake.add_version("db", json.dumps({"user": "app", "password": "pw-1", "port": 5432}).encode())
    fake.add_version("db", json.dumps({"user": "app", "password": "pw-2"}).encode())
    fake.add_version("der", bytes(range(256)) * 3)
    p = fake.project
    result = fetch(
        provider,
        [
            parse_reference("gcp-sm://db#password"),
            parse_reference("gcp-sm://db#user"),
            parse_reference("gcp-sm://db?version=1#password"),
            parse_reference(f"gcp-sm://projects/{p}/secrets/db/versions/1#port"),
            parse_reference("gcp-sm://der"),
        ],
    )
    assert list(result.values()) == [b"pw-2", b"app", b"pw-1", b"5432", bytes(range(256)) * 3]
    # Two keys of one version cost one read; the two spellings of version 1 are one too.
    names = sorted(access.name for access in fake.accesses)
    assert names == [
        f"projects/{p}/secrets/db/versions/1",
        f"projects/{p}/secrets/db/versions/latest",
        f"projects/{p}/secrets/der/versions/latest",
    ]
    assert all(access.transport == provider.transport for access in fake.accesses)


def test_many_secrets_take_one_token(
    fake: FakeSecretManager, provider: SecretManagerProvider
) -> None:
    values = {f"many-{i}": f"value-{i}".encode() for i in range(60)}
    for name, value in values.items():
        fake.add_version(name, value)
    refs = [parse_reference(f"gcp-sm://{name}") for name in values]
    result = fetch(provider, refs)
    assert [result[ref] for ref in refs] == list(values.values())
    assert fake.token_requests == [("metadata", "compute")]
    # The provider reused: the token is still good.
    assert fetch(provider, refs[:3])[refs[0]] == b"value-0"
    assert fake.tokens_issued == 1


def test_regional_secrets_go_to_their_regional_endpoint(
    fake: FakeSecretManager, provider: SecretManagerProvider
) -> None:
    fake.add_version("db", b"regional-value", location="us-central1")
    fake.add_version("db", b"global-value")
    p = fake.project
    regional = f"gcp-sm://projects/{p}/locations/us-central1/secrets/db"
    assert fetch_one(provider, regional) == b"regional-value"
    assert fetch_one(provider, f"gcp-sm://projects/{p}/secrets/db") == b"global-value"
    assert [(a.endpoint, a.name) for a in fake.accesses] == [
        ("us-central1", f"projects/{p}/locations/us-central1/secrets/db/versions/latest"),
        ("global", f"projects/{p}/secrets/db/versions/latest"),
    ]
    # A regional secret of another location, sent to this location's endpoint, is refused.
    other = fetch_one(provider, f"gcp-sm://projects/{p}/locations/europe-west1/secrets/db")
    assert isinstance(other, FetchError)
    assert not other.transient
    assert "INVALID_ARGUMENT" in str(other)


def test_default_regional_endpoint_is_the_locations() -> None:
    provider = SecretManagerProvider("gcp-sm")
    assert provider._endpoint("us-east4") == "secretmanager.us-east4.rep.googleapis.com"
    assert provider._endpoint(None) == "secretmanager.googleapis.com"
    custom = SecretManagerProvider("gcp-sm", {"regional_endpoint": "sm-{location}.corp.example"})
    assert custom._endpoint("us-east4") == "sm-us-east4.corp.example"


def test_berglas_references(fake: FakeSecretManager, transport: str) -> None:
    fake.add_version("api-key", b"key-1")
    fake.add_version("api-key", b"key-2")
    provider = BerglasProvider("sm", fake.provider_options(transport))
    try:
        p = fake.project
        assert fetch_one(provider, f"sm://{p}/api-key") == b"key-2"
        assert fetch_one(provider, f"sm://{p}/api-key#1") == b"key-1"  # '#' is berglas' version
    finally:
        provider.close()


# Where the project of a short reference comes from.


def test_project_comes_from_the_table_then_the_variable_then_the_credentials(
    fake: FakeSecretManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.add_version("db", b"from-table", project="table-project")
    fake.add_version("db", b"from-variable", project="variable-project")
    fake.add_version("db", b"from-metadata")  # the metadata server's project
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "variable-project")
    for table, expected in (({"project": "table-project"}, b"from-table"), ({}, b"from-variable")):
        provider = SecretManagerProvider("gcp-sm", {**fake.provider_options(), **table})
        try:
            assert fetch_one(provider, "gcp-sm://db") == expected
        finally:
            provider.close()
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT")
    provider = SecretManagerProvider("gcp-sm", fake.provider_options())
    try:
        assert fetch_one(provider, "gcp-sm://db") == b"from-metadata"
    finally:
        provider.close()
    assert "/computeMetadata/v1/project/project-id" in fake.metadata_requests


# Errors.


def test_missing_denied_disabled_and_destroyed(
    fake: FakeSecretManager, provider: SecretManagerProvider
) -> None:
    fake.add_version("denied", b"denied-value")
    fake.deny("denied")
    fake.add_version("disabled", b"old-value")
    fake.set_state("disabled", fake.add_version("disabled", b"disabled-value"), "DISABLED")
    fake.set_state("destroyed", fake.add_version("destroyed", b"gone"), "DESTROYED")
    fake.add_version("doc", b'{"k": "v"}')
    result = {
        text: fetch_one(provider, text)
        for text in (
            "gcp-sm://missing",
            "gcp-sm://disabled?version=9",
            "gcp-sm://denied",
            "gcp-sm://disabled",
            "gcp-sm://destroyed",
            "gcp-sm://doc#absent",
            "gcp-sm://disabled?version=1",
        )
    }
    assert result.pop("gcp-sm://disabled?version=1") == b"old-value"
    for text, error in result.items():
        assert isinstance(error, FetchError), text
        assert not error.transient, text
    missing = result["gcp-sm://missing"]
    assert isinstance(missing, NotFound)
    assert "NOT_FOUND: Secret [projects/" in str(missing)
    assert isinstance(result["gcp-sm://disabled?version=9"], NotFound)
    denied = result["gcp-sm://denied"]
    assert isinstance(denied, AccessDenied)
    assert "the metadata server" in str(denied)
    assert "PERMISSION_DENIED: Permission 'secretmanager.versions.access' denied" in str(denied)
    disabled = result["gcp-sm://disabled"]
    assert isinstance(disabled, NotFound)
    assert "versions/latest is disabled (FAILED_PRECONDITION" in str(disabled)
    destroyed = result["gcp-sm://destroyed"]
    assert isinstance(destroyed, NotFound)
    assert "is destroyed" in str(destroyed)
    absent = result["gcp-sm://doc#absent"]
    assert isinstance(absent, NotFound)
    assert "no key 'absent' (keys: k)" in str(absent)
    for error in result.values():
        for value in ("denied-value", "disabled-value", "old-value"):
            assert value not in f"{error} {error!r}"


def test_a_checksum_mismatch_is_an_error_never_a_value(
    fake: FakeSecretManager, provider: SecretManagerProvider
) -> None:
    fake.add_version("tampered", b"tampered-value")
    fake.corrupt("tampered")
    result = fetch_one(provider, "gcp-sm://tampered")
    assert isinstance(result, FetchError)
    assert result.transient  # corrupted on the way: asked for again until the deadline
    assert "does not match its CRC32C checksum" in str(result)
    assert "tampered-value" not in f"{result} {result!r}"


@pytest.mark.parametrize("code", ["UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL"])
def test_transient_statuses_are_unreachable_and_not_retried_by_the_library(
    fake: FakeSecretManager, provider: SecretManagerProvider, code: str
) -> None:
    fake.add_version("flaky", b"flaky-value")
    fake.fault("flaky", code, times=1)
    result = fetch_one(provider, "gcp-sm://flaky")
    assert isinstance(result, Unreachable), result
    assert code in str(result)
    # One request: the library's own retry (2 s, then up to 60 s) is off.
    assert [access.code for access in fake.accesses] == [code]
    assert fetch_one(provider, "gcp-sm://flaky") == b"flaky-value"  # as the core's retry does


@pytest.mark.parametrize("retry_after", [None, 7])
def test_quota_exhausted_is_throttled_and_stops_the_projects_reads(
    fake: FakeSecretManager, transport: str, retry_after: int | None
) -> None:
    for name in ("a", "b", "c"):
        fake.add_version(name, b"value")
    fake.add_version("other", b"other-value", project="other-project")
    fake.fault("a", "RESOURCE_EXHAUSTED", times=1, retry_after=retry_after)
    # One read at a time, so that the throttled read comes first.
    provider = SecretManagerProvider(
        "gcp-sm", {**fake.provider_options(transport), "concurrency": 1}
    )
    try:
        refs = [*(f"gcp-sm://{n}" for n in "abc"), "gcp-sm://projects/other-project/secrets/other"]
        result = fetch(provider, [parse_reference(text) for text in refs])
    finally:
        provider.close()
    errors = list(result.values())[:3]
    for error in errors:
        assert isinstance(error, Throttled), error
        assert error.transient
        assert error.retry_after == retry_after
        assert "RESOURCE_EXHAUSTED: Quota exceeded" in str(error)
    # The project over its quota got no further request; another project did.
    assert [access.name.split("/")[3] for access in fake.accesses] == ["a", "other"]
    assert list(result.values())[3] == b"other-value"


def test_a_slow_answer_ends_at_the_deadline(
    fake: FakeSecretManager, provider: SecretManagerProvider
) -> None:
    fake.add_version("slow", b"slow-value")
    assert fetch_one(provider, "gcp-sm://slow") == b"slow-value"  # token first
    fake.latency = 5
    started = time.monotonic()
    result = fetch_one(provider, "gcp-sm://slow", timeout=0.5)
    # Generous slack for a loaded machine; the point is 0.5 s, not the fake's 5 s.
    assert time.monotonic() - started < 3
    assert isinstance(result, Unreachable), result


def test_an_endpoint_that_is_down_is_unreachable(fake: FakeSecretManager, transport: str) -> None:
    closed = f"127.0.0.1:{free_port()}"
    provider = SecretManagerProvider("gcp-sm", {"transport": transport, "endpoint": closed})
    try:
        result = fetch_one(provider, "gcp-sm://anything", timeout=5)
    finally:
        provider.close()
    assert isinstance(result, Unreachable), result
    assert closed in str(result) or "UNAVAILABLE" in str(result)


def test_an_untrusted_certificate_is_permanent_and_names_the_fix(
    fake: FakeSecretManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.add_version("name", b"value")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    provider = SecretManagerProvider("gcp-sm", fake.provider_options("rest"))
    try:
        result = fetch_one(provider, "gcp-sm://name")
    finally:
        provider.close()
    assert isinstance(result, FetchError)
    assert not result.transient
    assert "REQUESTS_CA_BUNDLE" in str(result)


def test_rest_reads_the_proxy_variables_once(
    fake: FakeSecretManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.add_version("name", b"value")
    # A proxy that refuses connections: reads through it fail...
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{free_port()}")
    provider = SecretManagerProvider("gcp-sm", fake.provider_options("rest"))
    try:
        result = fetch_one(provider, "gcp-sm://name", timeout=5)
        assert isinstance(result, Unreachable), result
        # ...and the settings were read when the client was built, not per request.
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert isinstance(fetch_one(provider, "gcp-sm://name", timeout=5), Unreachable)
    finally:
        provider.close()
    # NO_PROXY naming the endpoint's host: straight to it.
    provider = SecretManagerProvider("gcp-sm", fake.provider_options("rest"))
    try:
        assert fetch_one(provider, "gcp-sm://name") == b"value"
    finally:
        provider.close()


# Credentials.


def test_metadata_server_refusing_a_token_is_access_denied_for_every_secret(
    fake: FakeSecretManager, provider: SecretManagerProvider
) -> None:
    fake.metadata_token_status = 403
    result = fetch(provider, [parse_reference("gcp-sm://a"), parse_reference("gcp-sm://b")])
    for error in result.values():
        assert isinstance(error, AccessDenied), error
        assert f"no token from the metadata server ({fake.metadata_host})" in str(error)
    assert fake.accesses == []  # no read was tried without a token
    assert (
        fake.metadata_requests.count("/computeMetadata/v1/instance/service-accounts/default/token")
        == 1
    )


def test_a_service_account_key_signs_its_own_token(
    fake: FakeSecretManager, transport: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What really happens with a key: the client library signs a JWT with it
    # (scope cloud-platform) and sends that as the bearer token; its token_uri
    # (the fake's OAuth endpoint here) is never called, and neither is the
    # metadata server.
    key = tmp_path / "key.json"
    private_key = fake.write_service_account_key(key)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
    fake.add_version("db", b"db-value")
    fake.add_version("api", b"api-value")
    provider = SecretManagerProvider("gcp-sm", fake.provider_options(transport))
    try:
        result = fetch(provider, [parse_reference("gcp-sm://db"), parse_reference("gcp-sm://api")])
    finally:
        provider.close()
    assert set(result.values()) == {b"db-value", b"api-value"}
    assert {access.credential for access in fake.accesses} == {"self-signed-jwt"}
    assert fake.token_requests == []
    assert fake.metadata_requests == []
    assert "PRIVATE KEY" in private_key


def test_a_key_the_service_does_not_accept(
    fake: FakeSecretManager, transport: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = tmp_path / "untrusted.json"
    fake.write_service_account_key(key, trusted=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
    fake.add_version("db", b"db-value")
    provider = SecretManagerProvider("gcp-sm", fake.provider_options(transport))
    try:
        result = fetch_one(provider, "gcp-sm://db")
    finally:
        provider.close()
    assert isinstance(result, AccessDenied), result
    assert not result.transient
    assert (
        f"rejected the token of the service account key in GOOGLE_APPLICATION_CREDENTIALS ({key})"
        in str(result)
    )
    assert "UNAUTHENTICATED" in str(result)


def test_an_external_account_file_exchanges_its_subject_token_once(
    fake: FakeSecretManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    subject = tmp_path / "oidc-token"
    subject.write_text("subject-token-canary-31c7")
    fake.add_subject_token("subject-token-canary-31c7")
    config = tmp_path / "external.json"
    config.write_text(
        json.dumps(
            {
                "type": "external_account",
                "audience": "//iam.googleapis.com/projects/123/locations/global/"
                "workloadIdentityPools/pool/providers/provider",
                "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
                "token_url": fake.sts_uri,
                "credential_source": {"file": str(subject)},
            }
        )
    )
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(config))
    # Without a project, google-auth would ask Cloud Resource Manager for the pool's.
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", fake.project)
    for i in range(20):
        fake.add_version(f"s{i}", f"v{i}".encode())
    provider = SecretManagerProvider("gcp-sm", fake.provider_options())
    try:
        result = fetch(provider, [parse_reference(f"gcp-sm://s{i}") for i in range(20)])
        assert sorted(result.values()) == sorted(f"v{i}".encode() for i in range(20))  # type: ignore[type-var]
        subject.write_text("a-subject-token-the-pool-refuses")
        provider.close()
        refused = fetch_one(provider, "gcp-sm://s0")
    finally:
        provider.close()
    assert fake.token_requests == [("sts", "token-exchange")]
    assert isinstance(refused, AccessDenied), refused
    assert (
        f"no token from the external account file (workload identity federation) in "
        f"GOOGLE_APPLICATION_CREDENTIALS ({config})"
    ) in str(refused)
    assert "subject token is invalid" in str(refused)


def test_a_credentials_file_that_is_not_there(
    fake: FakeSecretManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "nope.json"))
    provider = SecretManagerProvider("gcp-sm", fake.provider_options())
    try:
        result = fetch_one(provider, "gcp-sm://db")
    finally:
        provider.close()
    assert isinstance(result, AccessDenied), result
    assert f"GOOGLE_APPLICATION_CREDENTIALS ({tmp_path / 'nope.json'}) cannot be used" in str(
        result
    )
    assert "was not found" in str(result)


def test_gcloud_application_default_credentials_are_named(
    fake: FakeSecretManager, isolated_home: Path
) -> None:
    gcloud = isolated_home / ".config" / "gcloud"
    gcloud.mkdir(parents=True)
    fake.write_service_account_key(gcloud / "application_default_credentials.json")
    fake.add_version("db", b"db-value")
    provider = SecretManagerProvider("gcp-sm", fake.provider_options())
    try:
        assert fetch_one(provider, "gcp-sm://db") == b"db-value"
        assert provider._identity is not None
        source = provider._identity.source
    finally:
        provider.close()
    assert source == (
        "the service account key of gcloud's application default credentials "
        f"({gcloud / 'application_default_credentials.json'})"
    )


def test_user_credentials_are_named() -> None:
    # gcloud's user credentials always refresh at Google's own token endpoint
    # (google-auth ignores a token_uri in the file), which no test may call.
    from google.oauth2.credentials import Credentials

    credentials = Credentials(token=None, refresh_token="r", client_id="c", client_secret="s")
    environ = {"HOME": "/home/app"}
    assert describe_source(credentials, environ) == (
        "the user credentials of gcloud's application default credentials "
        "(/home/app/.config/gcloud/application_default_credentials.json)"
    )


def test_a_token_the_service_stops_accepting(
    fake: FakeSecretManager, provider: SecretManagerProvider
) -> None:
    fake.add_version("name", b"value")
    assert fetch_one(provider, "gcp-sm://name") == b"value"
    fake.revoke_tokens()
    result = fetch_one(provider, "gcp-sm://name")
    if provider.transport == "rest":
        # google-auth's session renews a token the service answers 401 to, once.
        assert result == b"value"
        assert fake.tokens_issued == 2
    else:
        assert isinstance(result, AccessDenied), result
        assert "rejected the token of the metadata server" in str(result)
        assert "UNAUTHENTICATED" in str(result)
        assert fake.tokens_issued == 1
    for token in fake.issued:
        assert token not in f"{result!r}"


def test_close_is_idempotent_and_the_provider_reusable(
    fake: FakeSecretManager, provider: SecretManagerProvider
) -> None:
    fake.add_version("name", b"value")
    assert fetch_one(provider, "gcp-sm://name") == b"value"
    provider.close()
    provider.close()  # idempotent: the core closes on every path
    assert fetch_one(provider, "gcp-sm://name") == b"value"  # a refresh loop's next run
