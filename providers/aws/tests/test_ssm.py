"""aws-ssm:// against moto's Parameter Store over HTTP, calls counted by the server."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from secretinit_aws import ParameterStoreProvider

from secretinit import (
    AccessDenied,
    BadReference,
    FetchError,
    NotFound,
    SecretRef,
    Throttled,
    parse_reference,
)

TIMEOUT = 20.0


def fetch(refs: Sequence[str], timeout: float = TIMEOUT, **options: Any) -> dict[str, Any]:
    """Check and fetch ``refs`` as the core does; results keyed by reference text."""
    parsed = [parse_reference(r) for r in refs]
    provider = ParameterStoreProvider("aws-ssm", options)
    try:
        for ref in parsed:
            provider.check_reference(ref)
        result: dict[SecretRef, bytes | FetchError] = dict(
            provider.fetch(list(dict.fromkeys(parsed)), timeout)
        )
    finally:
        provider.close()
    assert set(result) == set(parsed)
    return {str(ref): value for ref, value in result.items()}


def test_types_securestring_decrypted(ssm: Any, aws_server: Any, unique: str) -> None:
    ssm.put_parameter(Name=f"/{unique}/secure", Value="s3cure-π", Type="SecureString")
    ssm.put_parameter(Name=f"/{unique}/plain", Value="plain", Type="String")
    ssm.put_parameter(Name=f"/{unique}/list", Value="a,b,c", Type="StringList")
    ssm.put_parameter(Name=f"{unique}-flat", Value="no hierarchy", Type="SecureString")
    aws_server.reset()
    got = fetch(
        [
            f"aws-ssm:///{unique}/secure",
            f"aws-ssm:///{unique}/plain",
            f"aws-ssm:///{unique}/list",
            f"aws-ssm://{unique}-flat",
        ]
    )
    assert got == {
        f"aws-ssm:///{unique}/secure": "s3cure-π".encode(),
        f"aws-ssm:///{unique}/plain": b"plain",
        f"aws-ssm:///{unique}/list": b"a,b,c",
        f"aws-ssm://{unique}-flat": b"no hierarchy",
    }
    assert aws_server.counted() == {"GetParameters": 1}
    (body,) = aws_server.bodies("GetParameters")
    assert body["WithDecryption"] is True
    assert f"/{unique}/secure" in body["Names"]  # the leading slash is kept


def test_versions_json_keys_and_arn(ssm: Any, aws_server: Any, unique: str) -> None:
    name = f"/{unique}/db"
    ssm.put_parameter(Name=name, Value='{"user": "app", "password": "v1"}', Type="SecureString")
    ssm.put_parameter(
        Name=name, Value='{"user": "app", "password": "v2"}', Type="SecureString", Overwrite=True
    )
    arn = f"arn:aws:ssm:{aws_server.region}:{aws_server.account}:parameter{name}"
    aws_server.reset()
    got = fetch(
        [
            f"aws-ssm://{name}#password",
            f"aws-ssm://{name}#user",
            f"aws-ssm://{name}#password?version=1",
            f"aws-ssm://{name}#password?version=2",
            f"aws-ssm://{arn}#password",
            f"aws-ssm://{name}?version=9",
            f"aws-ssm://{name}#absent",
        ]
    )
    assert got[f"aws-ssm://{name}#password"] == b"v2"
    assert got[f"aws-ssm://{name}#user"] == b"app"
    assert got[f"aws-ssm://{name}#password?version=1"] == b"v1"
    assert got[f"aws-ssm://{name}#password?version=2"] == b"v2"
    assert got[f"aws-ssm://{arn}#password"] == b"v2"
    missing_version = got[f"aws-ssm://{name}?version=9"]
    assert isinstance(missing_version, NotFound)
    assert "version 9" in str(missing_version)
    assert isinstance(got[f"aws-ssm://{name}#absent"], NotFound)
    # One call: the name, name:1, name:2, name:9 and the ARN, each asked once.
    assert aws_server.counted() == {"GetParameters": 1}
    (body,) = aws_server.bodies("GetParameters")
    assert sorted(body["Names"]) == sorted([name, f"{name}:1", f"{name}:2", f"{name}:9", arn])


def test_missing_parameter_is_permanent_and_named(unique: str) -> None:
    ref = f"aws-ssm:///{unique}/absent"
    error = fetch([ref])[ref]
    assert isinstance(error, NotFound), error
    assert not error.transient
    assert f"/{unique}/absent" in str(error)


def test_region_comes_from_the_arn(aws_server: Any, unique: str) -> None:
    aws_server.admin("ssm", aws_server.other_region).put_parameter(
        Name=f"/{unique}/eu", Value="from-eu", Type="SecureString"
    )
    arn = f"arn:aws:ssm:{aws_server.other_region}:{aws_server.account}:parameter/{unique}/eu"
    got = fetch([f"aws-ssm://{arn}", f"aws-ssm:///{unique}/eu"])
    assert got[f"aws-ssm://{arn}"] == b"from-eu"
    assert isinstance(got[f"aws-ssm:///{unique}/eu"], NotFound)


def test_25_parameters_make_three_calls_of_at_most_10(
    ssm: Any, aws_server: Any, unique: str
) -> None:
    planted = {}
    for i in range(25):
        ssm.put_parameter(Name=f"/{unique}/p{i:02d}", Value=f"value-{i}", Type="SecureString")
        planted[f"aws-ssm:///{unique}/p{i:02d}"] = f"value-{i}".encode()
    aws_server.reset()
    assert fetch(list(planted)) == planted
    assert aws_server.counted() == {"GetParameters": 3}
    sizes = sorted(len(body["Names"]) for body in aws_server.bodies("GetParameters"))
    assert sizes == [5, 10, 10]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("aws-ssm://app/db", "aws-ssm:///app/db"),
        ("aws-ssm:///app/db:3", r"\?version=N"),
        ("aws-ssm:///app/db?version=0", "positive integer"),
        ("aws-ssm:///app/db?version=latest", "positive integer"),
        ("aws-ssm:///app/db?version-stage=AWSCURRENT", "does not accept"),
        ("aws-ssm://arn:aws:secretsmanager:us-east-1:123456789012:secret:x", "not an ARN"),
    ],
)
def test_bad_references_say_what_to_write(text: str, message: str) -> None:
    provider = ParameterStoreProvider("aws-ssm")
    try:
        with pytest.raises(BadReference, match=message):
            provider.check_reference(parse_reference(text))
    finally:
        provider.close()


def test_denied_call_is_asked_name_by_name(
    ssm: Any, aws_server: Any, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [f"/{unique}/a", f"/{unique}/b", f"/{unique}/c"]
    for name in names:
        ssm.put_parameter(Name=name, Value="denied-value-91", Type="SecureString")
    for variable, value in aws_server.iam_user(f"{unique}-nobody", []).items():
        monkeypatch.setenv(variable, value)
    aws_server.reset()
    with aws_server.enforcing_iam():
        got = fetch([f"aws-ssm://{name}" for name in names])
    for name in names:
        error = got[f"aws-ssm://{name}"]
        assert isinstance(error, AccessDenied), error
        assert not error.transient
        assert name in str(error)  # each error names its own parameter
        assert "denied-value-91" not in str(error)
    # AWS refuses GetParameters whole when one name is denied: one call per
    # name then says which.
    assert aws_server.counted() == {"GetParameters": 1 + len(names)}


def test_throttling_and_kms_failures(ssm: Any, aws_server: Any, unique: str) -> None:
    ssm.put_parameter(Name=f"/{unique}/x", Value="x", Type="SecureString")
    ref = f"aws-ssm:///{unique}/x"
    aws_server.reset()
    aws_server.fail("GetParameters", 400, "ThrottlingException", times=None)
    throttled = fetch([ref])[ref]
    assert isinstance(throttled, Throttled), throttled
    assert throttled.transient
    assert aws_server.counted() == {"GetParameters": 1}
    aws_server.reset()
    aws_server.fail("GetParameters", 400, "InvalidKeyId")
    kms = fetch([ref])[ref]
    assert isinstance(kms, AccessDenied), kms
    assert "KMS" in str(kms)
