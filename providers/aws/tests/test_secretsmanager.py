"""aws-sm:// against moto's Secrets Manager over HTTP, calls counted by the server."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import pytest
from secretinit_aws import SecretsManagerProvider

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

TIMEOUT = 20.0


def fetch(
    refs: Sequence[SecretRef | str], timeout: float = TIMEOUT, **options: Any
) -> dict[SecretRef, bytes | FetchError]:
    """Check and fetch ``refs`` as the core does: one provider, every reference at once."""
    parsed = [parse_reference(r) if isinstance(r, str) else r for r in refs]
    provider = SecretsManagerProvider("aws-sm", options)
    try:
        for ref in parsed:
            provider.check_reference(ref)
        result = dict(provider.fetch(list(dict.fromkeys(parsed)), timeout))
    finally:
        provider.close()
    assert set(result) == set(parsed)
    return result


def values(result: dict[SecretRef, bytes | FetchError]) -> dict[str, bytes | FetchError]:
    return {str(ref): value for ref, value in result.items()}


def test_name_full_arn_and_partial_arn_in_one_batch(sm: Any, aws_server: Any, unique: str) -> None:
    arn = sm.create_secret(Name=f"{unique}/db", SecretString="s3cret-by-name")["ARN"]
    aws_server.reset()
    got = values(fetch([f"aws-sm://{unique}/db", f"aws-sm://{arn}", f"aws-sm://{arn[:-7]}"]))
    assert set(got.values()) == {b"s3cret-by-name"}
    assert aws_server.counted() == {"BatchGetSecretValue": 1}
    assert len(aws_server.bodies("BatchGetSecretValue")[0]["SecretIdList"]) == 3


def test_json_keys_read_the_secret_once(sm: Any, aws_server: Any, unique: str) -> None:
    document = '{"username": "app", "password": "pässword", "port": 5432, "tls": {"on": true}}'
    sm.create_secret(Name=f"{unique}/json", SecretString=document)
    aws_server.reset()
    base = f"aws-sm://{unique}/json"
    got = values(
        fetch([base, f"{base}#username", f"{base}#password", f"{base}#port", f"{base}#tls"])
    )
    assert got[base] == document.encode()  # written as it is, never split or reformatted
    assert got[f"{base}#username"] == b"app"
    assert got[f"{base}#password"] == "pässword".encode()
    assert got[f"{base}#port"] == b"5432"
    assert got[f"{base}#tls"] == b'{"on":true}'
    assert aws_server.counted() == {"BatchGetSecretValue": 1}
    assert aws_server.bodies("BatchGetSecretValue")[0]["SecretIdList"] == [f"{unique}/json"]


def test_missing_key_and_key_of_text(sm: Any, unique: str) -> None:
    sm.create_secret(Name=f"{unique}/json", SecretString='{"a": "value-not-shown"}')
    sm.create_secret(Name=f"{unique}/text", SecretString="plain text")
    got = values(fetch([f"aws-sm://{unique}/json#b", f"aws-sm://{unique}/text#a"]))
    missing_key, not_json = got[f"aws-sm://{unique}/json#b"], got[f"aws-sm://{unique}/text#a"]
    assert isinstance(missing_key, NotFound)
    assert "'b'" in str(missing_key)
    assert "keys: a" in str(missing_key)  # the keys that exist, never their values
    assert "value-not-shown" not in str(missing_key)
    assert isinstance(not_json, NotFound)
    assert "not a JSON object" in str(not_json)


def test_version_stages_and_ids(sm: Any, aws_server: Any, unique: str) -> None:
    name = f"{unique}/rotated"
    first = sm.create_secret(Name=name, SecretString="v1")["VersionId"]
    second = sm.put_secret_value(SecretId=name, SecretString="v2")["VersionId"]
    sm.put_secret_value(SecretId=name, SecretString="v3-blue", VersionStages=["BLUE"])
    aws_server.reset()
    base = f"aws-sm://{name}"
    got = values(
        fetch(
            [
                base,
                f"{base}?version-stage=AWSPREVIOUS",
                f"{base}?version-stage=BLUE",
                f"{base}?version-id={first}",
                f"{base}?version-stage=AWSCURRENT&version-id={second}",
                f"{base}?version-stage=NO-SUCH-STAGE",
                f"{base}?version-id=00000000-0000-0000-0000-000000000000",
            ]
        )
    )
    assert got[base] == b"v2"
    assert got[f"{base}?version-stage=AWSPREVIOUS"] == b"v1"
    assert got[f"{base}?version-stage=BLUE"] == b"v3-blue"
    assert got[f"{base}?version-id={first}"] == b"v1"
    assert got[f"{base}?version-stage=AWSCURRENT&version-id={second}"] == b"v2"
    for absent in (
        "version-stage=NO-SUCH-STAGE",
        "version-id=00000000-0000-0000-0000-000000000000",
    ):
        error = got[f"{base}?{absent}"]
        assert isinstance(error, NotFound), error
        assert name in str(error)
    # The current version goes in a batch, each other version in its own call.
    assert aws_server.counted() == {"BatchGetSecretValue": 1, "GetSecretValue": 6}
    asked = {
        (body.get("VersionStage"), body.get("VersionId"))
        for body in aws_server.bodies("GetSecretValue")
    }
    assert (None, first) in asked
    assert ("AWSCURRENT", second) in asked


def test_binary_secret_byte_for_byte(sm: Any, unique: str) -> None:
    blob = os.urandom(4096) + bytes(range(256)) + b"\xff\xfe\x00"
    sm.create_secret(Name=f"{unique}/blob", SecretBinary=blob)
    base = f"aws-sm://{unique}/blob"
    got = values(fetch([base, f"{base}?version-stage=AWSCURRENT", f"{base}#key"]))
    assert got[base] == blob
    assert got[f"{base}?version-stage=AWSCURRENT"] == blob
    assert isinstance(got[f"{base}#key"], NotFound)


def test_missing_and_deleted_secrets_are_permanent_and_named(sm: Any, unique: str) -> None:
    sm.create_secret(Name=f"{unique}/gone", SecretString="deleted-value")
    sm.delete_secret(SecretId=f"{unique}/gone", RecoveryWindowInDays=7)
    sm.create_secret(Name=f"{unique}/here", SecretString="here")
    refs = [
        f"aws-sm://{unique}/here",
        f"aws-sm://{unique}/absent",
        f"aws-sm://{unique}/gone",
        f"aws-sm://{unique}/absent?version-stage=AWSCURRENT",
        f"aws-sm://{unique}/gone?version-stage=AWSCURRENT",
    ]
    got = values(fetch(refs))
    assert got[refs[0]] == b"here"
    for ref in refs[1:]:
        error = got[ref]
        assert isinstance(error, NotFound), (ref, error)
        assert not error.transient
        assert "deleted-value" not in str(error)
    for ref in (refs[2], refs[4]):
        assert "marked for deletion" in str(got[ref])
    assert f"{unique}/absent" in str(got[refs[1]])


def test_batch_of_45_makes_three_calls_of_at_most_20(sm: Any, aws_server: Any, unique: str) -> None:
    planted = {}
    for i in range(45):
        sm.create_secret(Name=f"{unique}/s{i:02d}", SecretString=f"value-{i}")
        planted[f"aws-sm://{unique}/s{i:02d}"] = f"value-{i}".encode()
    aws_server.reset()
    got = values(fetch(list(planted)))
    assert got == planted
    # moto accepts any number of ids a call; AWS takes 20. Count what was sent.
    assert aws_server.counted() == {"BatchGetSecretValue": 3}
    batches = [body["SecretIdList"] for body in aws_server.bodies("BatchGetSecretValue")]
    assert sorted(len(ids) for ids in batches) == [5, 20, 20]
    assert sorted(i for ids in batches for i in ids) == sorted(
        r[len("aws-sm://") :] for r in planted
    )


def test_region_comes_from_the_arn(aws_server: Any, unique: str) -> None:
    elsewhere = aws_server.admin("secretsmanager", aws_server.other_region)
    arn = elsewhere.create_secret(Name=f"{unique}/eu", SecretString="from-eu")["ARN"]
    assert f":{aws_server.other_region}:" in arn
    got = values(fetch([f"aws-sm://{arn}", f"aws-sm://{unique}/eu"]))
    assert got[f"aws-sm://{arn}"] == b"from-eu"
    assert isinstance(got[f"aws-sm://{unique}/eu"], NotFound)  # the name is read in us-east-1


def test_a_name_needs_a_region_an_arn_does_not(
    aws_server: Any, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = aws_server.admin("secretsmanager", aws_server.other_region)
    arn = elsewhere.create_secret(Name=f"{unique}/eu", SecretString="from-eu")["ARN"]
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    provider = SecretsManagerProvider("aws-sm")
    try:
        with pytest.raises(BadReference, match="AWS_REGION"):
            provider.check_reference(SecretRef("aws-sm", f"{unique}/eu"))
    finally:
        provider.close()
    assert values(fetch([f"aws-sm://{arn}"])) == {f"aws-sm://{arn}": b"from-eu"}
    configured = values(fetch([f"aws-sm://{unique}/eu"], region=aws_server.other_region))
    assert configured == {f"aws-sm://{unique}/eu": b"from-eu"}


def test_bad_references_and_options_are_refused() -> None:
    provider = SecretsManagerProvider("aws-sm")
    try:
        for text in (
            "aws-sm://arn:aws:ssm:us-east-1:123456789012:parameter/app",
            "aws-sm://arn:aws:secretsmanager::123456789012:secret:app",
            "aws-sm://arn:aws:secretsmanager:us-east-1",
            "aws-sm://app?version=1",
        ):
            with pytest.raises(BadReference):
                provider.check_reference(parse_reference(text))
    finally:
        provider.close()
    with pytest.raises(ConfigError, match=r"\[providers\.aws\]"):
        SecretsManagerProvider("aws-sm", {"regoin": "eu-west-1"})
    with pytest.raises(ConfigError, match="region must be a string"):
        SecretsManagerProvider("aws-sm", {"region": 1})
    with pytest.raises(ConfigError, match="no-such-profile"):
        SecretsManagerProvider("aws-sm", {"profile": "no-such-profile"})


def test_credentials_from_a_profile(
    sm: Any, unique: str, isolated_home: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sm.create_secret(Name=f"{unique}/p", SecretString="via-profile")
    credentials = isolated_home / "credentials"
    credentials.write_text(
        f"[app]\naws_access_key_id = {os.environ['AWS_ACCESS_KEY_ID']}\n"
        f"aws_secret_access_key = {os.environ['AWS_SECRET_ACCESS_KEY']}\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    assert values(fetch([f"aws-sm://{unique}/p"], profile="app")) == {
        f"aws-sm://{unique}/p": b"via-profile"
    }


def test_no_credentials_is_denied_not_retried(unique: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    error = values(fetch([f"aws-sm://{unique}/x"]))[f"aws-sm://{unique}/x"]
    assert isinstance(error, AccessDenied), error
    assert "no AWS credentials" in str(error)


# Access control: moto enforcing real IAM policies on real signed requests.


def test_policy_without_batch_falls_back_to_get_secret_value(
    sm: Any, aws_server: Any, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    refs = {}
    for i in range(5):
        sm.create_secret(Name=f"{unique}/s{i}", SecretString=f"value-{i}")
        refs[f"aws-sm://{unique}/s{i}"] = f"value-{i}".encode()
    user = aws_server.iam_user(f"{unique}-getonly", ["secretsmanager:GetSecretValue"])
    for name, value in user.items():
        monkeypatch.setenv(name, value)
    aws_server.reset()
    with aws_server.enforcing_iam():
        got = values(fetch(list(refs)))
    assert got == refs
    assert aws_server.counted() == {"BatchGetSecretValue": 1, "GetSecretValue": 5}


def test_denied_by_policy_and_unknown_key(
    sm: Any, aws_server: Any, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sm.create_secret(Name=f"{unique}/a", SecretString="value-a")
    user = aws_server.iam_user(f"{unique}-nobody", [])
    refs = [f"aws-sm://{unique}/a", f"aws-sm://{unique}/a?version-stage=AWSCURRENT"]
    for credentials in (user, {"AWS_ACCESS_KEY_ID": "AKIDUNKNOWN0000"}):
        for name, value in credentials.items():
            monkeypatch.setenv(name, value)
        with aws_server.enforcing_iam():
            got = values(fetch(refs))
        for ref in refs:
            error = got[ref]
            assert isinstance(error, AccessDenied), (ref, error)
            assert not error.transient
            assert f"{unique}/a" in str(error)
            assert user["AWS_SECRET_ACCESS_KEY"] not in str(error)


# Faults injected in front of moto, in AWS's wire format, parsed by botocore.


def test_throttling_is_left_to_the_core_not_retried_by_botocore(
    sm: Any, aws_server: Any, unique: str
) -> None:
    sm.create_secret(Name=f"{unique}/t", SecretString="after-throttling")
    aws_server.reset()
    aws_server.fail("BatchGetSecretValue", 400, "ThrottlingException", times=2)
    ref = f"aws-sm://{unique}/t"
    error = values(fetch([ref]))[ref]
    assert isinstance(error, Throttled), error
    assert error.retry_after is None  # AWS sends no Retry-After
    assert "Secrets Manager is throttling requests (ThrottlingException: " in str(error)
    assert aws_server.counted() == {"BatchGetSecretValue": 1}  # one attempt per call
    # The core's retries, with its backoff: one request each, then the value.
    provider = SecretsManagerProvider("aws-sm", {})
    try:
        got = fetch_with_retries(provider, [parse_reference(ref)], time.monotonic() + 60)
    finally:
        provider.close()
    assert got == {parse_reference(ref): b"after-throttling"}
    assert aws_server.counted() == {"BatchGetSecretValue": 3}


def test_a_retry_after_is_honoured(sm: Any, aws_server: Any, unique: str) -> None:
    sm.create_secret(Name=f"{unique}/t", SecretString="after-the-wait")
    aws_server.reset()
    aws_server.fail("BatchGetSecretValue", 429, "TooManyRequestsException", retry_after=2)
    ref = parse_reference(f"aws-sm://{unique}/t")
    provider = SecretsManagerProvider("aws-sm", {})
    try:
        got = fetch_with_retries(provider, [ref], time.monotonic() + 60)
    finally:
        provider.close()
    assert got == {ref: b"after-the-wait"}
    arrivals = aws_server.arrivals
    throttled = [i for i, (_, faulted) in enumerate(arrivals) if faulted]
    assert len(throttled) == 1
    after = arrivals[throttled[0] + 1 :]
    assert len(after) == 1  # one retry, then the value
    assert after[0][0] - arrivals[throttled[0]][0] >= 2  # no sooner than the store asked


@pytest.mark.parametrize(
    ("operation", "status", "code"),
    [
        ("BatchGetSecretValue", 400, "ThrottlingException"),
        ("BatchGetSecretValue", 500, "InternalServiceError"),
        ("GetSecretValue", 503, "ServiceUnavailable"),
        ("GetSecretValue", 429, "TooManyRequestsException"),
    ],
)
def test_persistent_throttling_and_5xx_are_transient(
    sm: Any, aws_server: Any, unique: str, operation: str, status: int, code: str
) -> None:
    sm.create_secret(Name=f"{unique}/t", SecretString="x")
    ref = f"aws-sm://{unique}/t" + (
        "?version-stage=AWSCURRENT" if operation == "GetSecretValue" else ""
    )
    aws_server.reset()
    aws_server.fail(operation, status, code, times=None)
    error = values(fetch([ref]))[ref]
    assert isinstance(error, Throttled if status in (400, 429) else Unreachable), error
    assert error.transient
    assert code in str(error)
    assert aws_server.counted() == {operation: 1}  # one attempt: the core owns retries


def test_kms_decryption_failure_is_permanent_and_says_kms(
    sm: Any, aws_server: Any, unique: str
) -> None:
    sm.create_secret(Name=f"{unique}/k", SecretString="x")
    aws_server.fail("GetSecretValue", 400, "DecryptionFailure")
    ref = f"aws-sm://{unique}/k?version-stage=AWSCURRENT"
    error = values(fetch([ref]))[ref]
    assert isinstance(error, AccessDenied), error
    assert "KMS" in str(error)
    assert "DecryptionFailure" in str(error)


def test_batch_refused_as_a_whole_is_asked_one_by_one(
    sm: Any, aws_server: Any, unique: str
) -> None:
    sm.create_secret(Name=f"{unique}/ok", SecretString="fine")
    aws_server.reset()
    aws_server.fail("BatchGetSecretValue", 400, "ValidationException")
    refs = [f"aws-sm://{unique}/ok", f"aws-sm://{unique}/absent"]
    got = values(fetch(refs))
    assert got[refs[0]] == b"fine"
    assert isinstance(got[refs[1]], NotFound)
    assert aws_server.counted() == {"BatchGetSecretValue": 1, "GetSecretValue": 2}


def test_connection_refused_is_transient(closed_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port}")
    error = values(fetch(["aws-sm://app/db"]))["aws-sm://app/db"]
    assert isinstance(error, Unreachable), error
    assert "could not be reached" in str(error)


def test_a_hung_server_cannot_outlive_the_deadline(sm: Any, aws_server: Any, unique: str) -> None:
    sm.create_secret(Name=f"{unique}/slow", SecretString="x")
    aws_server.reset()
    aws_server.fail("BatchGetSecretValue", 500, "InternalServiceError", times=None, delay=5.0)
    started = time.monotonic()
    error = values(fetch([f"aws-sm://{unique}/slow"], timeout=1.0))[f"aws-sm://{unique}/slow"]
    elapsed = time.monotonic() - started
    assert isinstance(error, Unreachable), error
    assert elapsed < 2.5, elapsed
    # botocore's retries do not go on behind the core's back after the deadline.
    time.sleep(3)
    assert aws_server.counted() == {"BatchGetSecretValue": 1}


def test_a_refused_credential_is_not_asked_again_per_secret(aws_server: Any, unique: str) -> None:
    aws_server.fail("BatchGetSecretValue", 400, "UnrecognizedClientException")
    refs = [f"aws-sm://{unique}/s{i}" for i in range(5)]
    got = values(fetch(refs))
    for ref in refs:
        error = got[ref]
        assert isinstance(error, AccessDenied), error
        assert "UnrecognizedClientException" in str(error)
    assert aws_server.counted() == {"BatchGetSecretValue": 1}


def test_a_refused_credential_stops_the_calls_not_yet_made(aws_server: Any, unique: str) -> None:
    # Versioned references are one call each: 25 calls, at most 10 at once.
    refs = [f"aws-sm://{unique}/s{i}?version-stage=AWSCURRENT" for i in range(25)]
    aws_server.fail("GetSecretValue", 400, "UnrecognizedClientException", times=None)
    got = values(fetch(refs))
    for ref in refs:
        error = got[ref]
        assert isinstance(error, AccessDenied), error
        assert not error.transient
        assert "UnrecognizedClientException" in str(error)
    assert aws_server.counted()["GetSecretValue"] <= 10  # those already in flight, no more


def test_the_config_table_region_wins_over_aws_region(aws_server: Any, unique: str) -> None:
    elsewhere = aws_server.admin("secretsmanager", aws_server.other_region)
    elsewhere.create_secret(Name=f"{unique}/eu", SecretString="from-eu")
    assert os.environ["AWS_REGION"] != aws_server.other_region
    got = values(fetch([f"aws-sm://{unique}/eu"], region=aws_server.other_region))
    assert got == {f"aws-sm://{unique}/eu": b"from-eu"}
