"""Reading: KV 1 and 2 found from the mount, versions, #KEY and whole maps, namespaces, TLS."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from secretinit_vault import VaultProvider

from conftest import assert_no_leak
from secretinit import BadReference, FetchError, NotFound, parse_reference

from .conftest import start_server, unique

TIMEOUT = 20.0


def fetch(provider: VaultProvider, texts: Sequence[str]) -> dict[str, bytes | FetchError]:
    refs = [parse_reference(text) for text in texts]
    for ref in refs:
        provider.check_reference(ref)
    try:
        result = provider.fetch(list(dict.fromkeys(refs)), TIMEOUT)
    finally:
        provider.close()
    return {str(ref): result[ref] for ref in refs}


def test_kv2_and_kv1_keys_and_whole_maps(bao: Any, reader: str, home: Path) -> None:
    v2, v1 = unique("secret/app/db"), unique("kv1/app/db")
    document = {"username": "app", "password": "pw-Ω", "port": 5432, "tags": ["a", "b"]}
    bao.put(v2, document)
    bao.put(v1, document)
    refs = [f"{p}{suffix}" for p in (v2, v1) for suffix in ("#password", "#port", "#tags", "")]
    result = fetch(bao.provider(bao.environ(home, reader)), [f"vault://{r}" for r in refs])
    for path in (v2, v1):
        assert result[f"vault://{path}#password"] == "pw-Ω".encode()
        assert result[f"vault://{path}#port"] == b"5432"  # non-strings as compact JSON
        assert result[f"vault://{path}#tags"] == b'["a","b"]'
        whole = result[f"vault://{path}"]
        assert isinstance(whole, bytes)
        assert json.loads(whole) == document


def test_versions(bao: Any, reader: str, home: Path) -> None:
    path = unique("secret/versioned")
    for value in ("one", "two", "three"):
        bao.put(path, {"value": value})
    bao.api("POST", f"secret/delete/{path.partition('/')[2]}", {"versions": [2]})
    base = f"vault://{path}#value"
    result = fetch(
        bao.provider(bao.environ(home, reader)),
        [base, f"{base}?version=1", f"{base}?version=3", f"{base}?version=2", f"{base}?version=9"],
    )
    assert result[base] == b"three"
    assert result[f"{base}?version=1"] == b"one"
    assert result[f"{base}?version=3"] == b"three"
    for gone in ("2", "9"):  # deleted, never written
        error = result[f"{base}?version={gone}"]
        assert isinstance(error, NotFound), error
        assert f"version {gone}" in str(error)


def test_version_on_kv1_is_an_error(bao: Any, reader: str, home: Path) -> None:
    path = unique("kv1/plain")
    bao.put(path, {"value": "x"})
    result = fetch(bao.provider(bao.environ(home, reader)), [f"vault://{path}#value?version=1"])
    error = result[f"vault://{path}#value?version=1"]
    assert isinstance(error, FetchError)
    assert not error.transient
    assert "KV version 2" in str(error)


def test_n_keys_of_one_path_cost_one_read(bao: Any, reader: str, home: Path) -> None:
    shared = unique("secret/many")
    bao.put(shared, {f"k{i}": f"v{i}" for i in range(20)})
    others = [unique("secret/single") for _ in range(3)]
    for path in others:
        bao.put(path, {"value": path})
    refs = [f"vault://{shared}#k{i}" for i in range(20)] + [f"vault://{p}#value" for p in others]
    result = fetch(bao.provider(bao.environ(home, reader)), refs)
    assert [result[f"vault://{shared}#k{i}"] for i in range(20)] == [
        f"v{i}".encode() for i in range(20)
    ]
    assert bao.audited_requests(f"secret/data/{shared.partition('/')[2]}") == 2  # write + 1 read
    for path in others:
        assert bao.audited_requests(f"secret/data/{path.partition('/')[2]}") == 2


def test_mount_is_asked_once_per_mount(bao: Any, reader: str, home: Path) -> None:
    paths = [unique("secret/mounted") for _ in range(5)]
    for path in paths:
        bao.put(path, {"value": "x"})
    fetch(bao.provider(bao.environ(home, reader)), [f"vault://{p}#value" for p in paths])
    asked = sum(bao.audited_requests(f"sys/internal/ui/mounts/{p}") for p in paths)
    assert asked == 1


def test_data_prefix_gets_a_hint(bao: Any, reader: str, home: Path) -> None:
    path = unique("secret/hinted")
    bao.put(path, {"value": "x"})
    typo = f"vault://secret/data/{path.partition('/')[2]}#value"
    error = fetch(bao.provider(bao.environ(home, reader)), [typo])[typo]
    assert isinstance(error, NotFound)
    assert "without data/" in str(error)


def test_binary_needs_explicit_base64(bao: Any, reader: str, home: Path) -> None:
    path = unique("secret/binary")
    bao.put(path, {"blob": "AAEC/w==", "text": "not base64!"})
    ref = f"vault://{path}#blob?encoding=base64"
    bad = f"vault://{path}#text?encoding=base64"
    result = fetch(bao.provider(bao.environ(home, reader)), [ref, bad, f"vault://{path}#blob"])
    assert result[ref] == b"\x00\x01\x02\xff"
    assert result[f"vault://{path}#blob"] == b"AAEC/w=="
    assert isinstance(result[bad], FetchError)
    assert "not valid base64" in str(result[bad])
    assert_no_leak(["not base64!"], str(result[bad]))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("vault://secret", "MOUNT/PATH"),
        ("vault://secret//app", "empty"),
        ("vault://secret/../sys/x", "'..'"),
        ("vault://secret/app?version=0", "whole number"),
        ("vault://secret/app?version=latest", "whole number"),
        ("vault://secret/app?version=²", "whole number"),
        ("vault://secret/app#k?encoding=hex", "not known"),
        ("vault://secret/app?encoding=base64", "#KEY"),
        ("vault://secret/app?kv=2", "does not accept option"),
    ],
)
def test_bad_references(text: str, message: str, bao: Any, reader: str, home: Path) -> None:
    provider = bao.provider(bao.environ(home, reader))
    with pytest.raises(BadReference, match=message):
        provider.check_reference(parse_reference(text))


def test_generic_path_and_unmounted_path(bao: Any, reader: str, home: Path) -> None:
    ref = "vault://nowhere/app/db#password"
    error = fetch(bao.provider(bao.environ(home, reader)), [ref])[ref]
    assert isinstance(error, FetchError)
    assert not error.transient


def test_namespace(bao: Any, reader: str, home: Path) -> None:
    namespace = unique("team")
    bao.api("POST", f"sys/namespaces/{namespace}")
    in_namespace = {"X-Vault-Namespace": namespace}
    bao.api(
        "POST",
        "sys/mounts/secret",
        {"type": "kv", "options": {"version": "2"}},
        headers=in_namespace,
    )
    bao.api("POST", "secret/data/app/db", {"data": {"password": "ns-pw"}}, headers=in_namespace)
    ref = "vault://secret/app/db#password"
    root = bao.server.root_token
    result = fetch(bao.provider(bao.environ(home, root, VAULT_NAMESPACE=namespace)), [ref])
    assert result[ref] == b"ns-pw"
    outside = fetch(bao.provider(bao.environ(home, root)), [ref])[ref]
    assert isinstance(outside, NotFound)


def test_tls_with_its_ca(tmp_path: Path, home: Path, caplog: pytest.LogCaptureFixture) -> None:
    server = start_server(tmp_path / "tls", tls=True)
    try:
        server.api("POST", "secret/data/app/db", {"data": {"password": "tls-pw"}})
        ref = "vault://secret/app/db#password"
        base = {"VAULT_ADDR": server.address, "VAULT_TOKEN": server.root_token, "HOME": str(home)}
        # VAULT_CACERT is read from the provider's environment, not from hvac's import-time copy.
        trusted = VaultProvider("vault", {}, {**base, "VAULT_CACERT": server.ca_file})
        assert fetch(trusted, [ref])[ref] == b"tls-pw"
        from_table = VaultProvider("vault", {"ca_cert": server.ca_file}, base)
        assert fetch(from_table, [ref])[ref] == b"tls-pw"

        untrusted = fetch(VaultProvider("vault", {}, base), [ref])[ref]
        assert isinstance(untrusted, FetchError)
        assert not untrusted.transient  # a certificate problem does not go away by waiting
        assert "VAULT_CACERT" in str(untrusted)

        with caplog.at_level(logging.WARNING, logger="secretinit.vault"):
            skipping = VaultProvider("vault", {}, {**base, "VAULT_SKIP_VERIFY": "true"})
        assert "not verified" in caplog.text
        assert fetch(skipping, [ref])[ref] == b"tls-pw"
    finally:
        server.kill()
