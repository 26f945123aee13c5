"""Every way of getting a token: given (variable, file, ~/.vault-token) or by logging in."""

from __future__ import annotations

import base64
import datetime
import http.server
import ipaddress
import json
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from secretinit_vault import VaultProvider

from conftest import assert_no_leak
from secretinit import AccessDenied, ConfigError, FetchError, SecretRef

from .conftest import approle_files, secret_id, unique


@pytest.fixture(scope="module")
def planted(bao: Any) -> SecretRef:
    path = unique("secret/auth")
    bao.put(path, {"password": "auth-test-value"})
    return SecretRef("vault", path, "password")


def read(provider: VaultProvider, ref: SecretRef) -> bytes | FetchError:
    provider.check_reference(ref)
    try:
        return provider.fetch([ref], 20.0)[ref]
    finally:
        provider.close()


def token_is_live(bao: Any, token: str) -> bool:
    try:
        bao.api("POST", "auth/token/lookup", {"token": token})
    except Exception:
        return False
    return True


# --- a token given to secretinit: used, never revoked ---


def test_token_variable(bao: Any, reader: str, home: Path, planted: SecretRef) -> None:
    assert read(bao.provider(bao.environ(home, reader)), planted) == b"auth-test-value"
    assert token_is_live(bao, reader)  # not ours to revoke


def test_token_file(bao: Any, reader: str, home: Path, planted: SecretRef) -> None:
    sink = home / "agent-sink"
    sink.write_text(reader + "\n")
    provider = bao.provider(bao.environ(home), {"token_file": str(sink)})
    assert read(provider, planted) == b"auth-test-value"
    assert token_is_live(bao, reader)


def test_home_vault_token(bao: Any, reader: str, home: Path, planted: SecretRef) -> None:
    (home / ".vault-token").write_text(reader)
    assert read(bao.provider(bao.environ(home)), planted) == b"auth-test-value"


def test_variable_wins_over_token_file(
    bao: Any, reader: str, home: Path, planted: SecretRef
) -> None:
    sink = home / "sink"
    sink.write_text("not-a-valid-token")
    provider = bao.provider(bao.environ(home, reader), {"token_file": str(sink)})
    assert read(provider, planted) == b"auth-test-value"


def test_no_token_anywhere_is_a_config_error(bao: Any, home: Path) -> None:
    with pytest.raises(ConfigError, match="no Vault token"):
        bao.provider(bao.environ(home))


def test_rejected_token_says_so_and_never_shows_it(
    bao: Any, home: Path, planted: SecretRef
) -> None:
    bogus = "hvs.bogus-token-" + uuid.uuid4().hex
    error = read(bao.provider(bao.environ(home, bogus)), planted)
    assert isinstance(error, AccessDenied), error
    assert not error.transient
    assert "rejected the token" in str(error)
    assert_no_leak([bogus], str(error), repr(error))


# --- AppRole, with credentials in files as Docker secrets give them ---


def test_approle_logs_in_and_revokes_its_token(
    bao: Any, approle: str, home: Path, planted: SecretRef
) -> None:
    options = approle_files(home, approle, secret_id(bao))
    provider = bao.provider(bao.environ(home), options)
    provider.check_reference(planted)
    before = bao.accessors()
    assert provider.fetch([planted], 20.0)[planted] == b"auth-test-value"
    created = bao.accessors() - before
    assert len(created) == 1  # the login token
    provider.close()
    assert not (created & bao.accessors()), "the login token outlived close()"


def test_approle_ignores_vault_token(
    bao: Any, approle: str, home: Path, planted: SecretRef
) -> None:
    options = approle_files(home, approle, secret_id(bao))
    provider = bao.provider(bao.environ(home, "ignored-token"), options)
    assert read(provider, planted) == b"auth-test-value"


def test_approle_wrapped_secret_id(bao: Any, approle: str, home: Path, planted: SecretRef) -> None:
    wrapping_token = secret_id(bao, wrap_ttl="5m")
    options = {**approle_files(home, approle, wrapping_token), "secret_id_wrapped": True}
    assert read(bao.provider(bao.environ(home), options), planted) == b"auth-test-value"
    # A wrapping token unwraps once: a second use (an attacker's or ours) is refused.
    again = read(bao.provider(bao.environ(home), options), planted)
    assert isinstance(again, AccessDenied), again
    assert "unwrapping" in str(again)
    assert_no_leak([wrapping_token], str(again))


def test_approle_bad_secret_id(bao: Any, approle: str, home: Path, planted: SecretRef) -> None:
    wrong = str(uuid.uuid4())
    error = read(bao.provider(bao.environ(home), approle_files(home, approle, wrong)), planted)
    assert isinstance(error, AccessDenied), error
    assert not error.transient
    assert "AppRole login" in str(error)
    assert_no_leak([wrong, approle], str(error))


def test_approle_missing_file(bao: Any, approle: str, home: Path, planted: SecretRef) -> None:
    options = {**approle_files(home, approle, "x"), "secret_id_file": str(home / "absent")}
    error = read(bao.provider(bao.environ(home), options), planted)
    assert isinstance(error, FetchError)
    assert "absent does not exist" in str(error)


# --- JWT, with a key pair made here ---


@pytest.fixture(scope="module")
def jwt_key(bao: Any) -> rsa.RSAPrivateKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    bao.api("POST", "sys/auth/jwt", {"type": "jwt"})
    bao.api("POST", "auth/jwt/config", {"jwt_validation_pubkeys": [public.decode()]})
    bao.api(
        "POST",
        "auth/jwt/role/app",
        {
            "role_type": "jwt",
            "bound_audiences": ["secretinit"],
            "user_claim": "sub",
            "token_policies": ["reader"],
            "token_ttl": "10m",
        },
    )
    return key


def sign_jwt(key: rsa.RSAPrivateKey, claims: dict[str, Any]) -> str:
    def part(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    header = part(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    signing_input = header + b"." + part(json.dumps(claims).encode())
    signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return (signing_input + b"." + part(signature)).decode()


def test_jwt_login(bao: Any, jwt_key: rsa.RSAPrivateKey, home: Path, planted: SecretRef) -> None:
    now = int(time.time())
    claims = {"sub": "app", "aud": "secretinit", "iat": now, "nbf": now - 5, "exp": now + 300}
    (home / "jwt").write_text(sign_jwt(jwt_key, claims))
    provider = bao.provider(
        bao.environ(home), {"auth": "jwt", "role": "app", "jwt_file": str(home / "jwt")}
    )
    before = bao.accessors()
    assert read(provider, planted) == b"auth-test-value"
    assert bao.accessors() <= before  # logged in, then revoked


def test_jwt_wrong_audience(
    bao: Any, jwt_key: rsa.RSAPrivateKey, home: Path, planted: SecretRef
) -> None:
    now = int(time.time())
    token = sign_jwt(jwt_key, {"sub": "app", "aud": "someone-else", "iat": now, "exp": now + 300})
    (home / "jwt").write_text(token)
    options = {"auth": "jwt", "role": "app", "jwt_file": str(home / "jwt")}
    error = read(bao.provider(bao.environ(home), options), planted)
    assert isinstance(error, AccessDenied), error
    assert "JWT login" in str(error)
    assert_no_leak([token], str(error))


# --- Kubernetes, with a TokenReview endpoint owned by the test ---


class TokenReviewer:
    """The Kubernetes TokenReview API, vouching for exactly one service-account token."""

    def __init__(self, token: str, uid: str, workdir: Path) -> None:
        self.reviews = 0
        reviewer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                reviewer.reviews += 1
                status: dict[str, Any] = {"authenticated": False}
                if body["spec"]["token"] == token:
                    status = {
                        "authenticated": True,
                        "user": {"username": "system:serviceaccount:default:app", "uid": uid},
                    }
                answer = json.dumps(
                    {
                        "apiVersion": "authentication.k8s.io/v1",
                        "kind": "TokenReview",
                        "status": status,
                    }
                ).encode()
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        # The kubernetes method insists on HTTPS with a CA it is given.
        self.ca_pem, cert_file, key_file = make_certificate(workdir)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_file, key_file)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def make_certificate(workdir: Path) -> tuple[str, str, str]:
    """A throwaway CA and a certificate it signs for 127.0.0.1: (CA PEM, cert file, key file)."""
    now = datetime.datetime.now(datetime.UTC)
    valid = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(hours=1))

    def certificate(subject: str, key: Any, issuer: str, signer: Any, ca: bool) -> Any:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(valid[0])
            .not_valid_after(valid[1])
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            ).add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate("test CA", ca_key, "test CA", ca_key, True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = certificate("127.0.0.1", leaf_key, "test CA", ca_key, False)
    cert_file, key_file = workdir / "reviewer.pem", workdir / "reviewer-key.pem"
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca.public_bytes(serialization.Encoding.PEM).decode(), str(cert_file), str(key_file)


@pytest.fixture(scope="module")
def service_account(
    bao: Any, jwt_key: rsa.RSAPrivateKey, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, TokenReviewer]]:
    uid = str(uuid.uuid4())
    claims = {
        "iss": "kubernetes/serviceaccount",
        "sub": "system:serviceaccount:default:app",
        "kubernetes.io/serviceaccount/namespace": "default",
        "kubernetes.io/serviceaccount/service-account.name": "app",
        "kubernetes.io/serviceaccount/service-account.uid": uid,
    }
    token = sign_jwt(jwt_key, claims)
    reviewer = TokenReviewer(token, uid, tmp_path_factory.mktemp("reviewer"))
    bao.api("POST", "sys/auth/k8s", {"type": "kubernetes"})
    bao.api(
        "POST",
        "auth/k8s/config",
        {
            "kubernetes_host": f"https://127.0.0.1:{reviewer.port}",
            "kubernetes_ca_cert": reviewer.ca_pem,
            "disable_local_ca_jwt": True,
        },
    )
    bao.api(
        "POST",
        "auth/k8s/role/app",
        {
            "bound_service_account_names": ["app"],
            "bound_service_account_namespaces": ["default"],
            "token_policies": ["reader"],
            "token_ttl": "10m",
        },
    )
    yield token, reviewer
    reviewer.server.shutdown()
    reviewer.server.server_close()


def test_kubernetes_login(
    bao: Any, service_account: tuple[str, TokenReviewer], home: Path, planted: SecretRef
) -> None:
    token, reviewer = service_account
    (home / "sa-token").write_text(token)
    options = {
        "auth": "kubernetes",
        "role": "app",
        "auth_mount": "k8s",
        "jwt_file": str(home / "sa-token"),
    }
    reviews = reviewer.reviews
    before = bao.accessors()
    assert read(bao.provider(bao.environ(home), options), planted) == b"auth-test-value"
    assert reviewer.reviews == reviews + 1  # OpenBao asked Kubernetes about the token
    assert bao.accessors() <= before


def test_kubernetes_token_not_vouched_for(
    bao: Any,
    jwt_key: rsa.RSAPrivateKey,
    service_account: tuple[str, TokenReviewer],
    home: Path,
    planted: SecretRef,
) -> None:
    forged = sign_jwt(jwt_key, {"iss": "kubernetes/serviceaccount", "sub": "x"})
    (home / "sa-token").write_text(forged)
    options = {
        "auth": "kubernetes",
        "role": "app",
        "auth_mount": "k8s",
        "jwt_file": str(home / "sa-token"),
    }
    error = read(bao.provider(bao.environ(home), options), planted)
    assert isinstance(error, AccessDenied), error
    assert "Kubernetes login" in str(error)
    assert_no_leak([forged], str(error))


# --- configuration mistakes are reported together, before anything is fetched ---


def test_config_problems_reported_at_once(bao: Any, home: Path) -> None:
    options = {"auth": "approle", "role": "app", "concurrency": 0, "jwt_file": "/x"}
    with pytest.raises(ConfigError) as caught:
        bao.provider(bao.environ(home, VAULT_SKIP_VERIFY="maybe"), options)
    message = str(caught.value)
    for expected in (
        "[providers.vault] role: not used with auth = 'approle' (it is for auth = "
        "'kubernetes' or 'jwt')",
        "[providers.vault] jwt_file: not used with auth = 'approle'",
        "[providers.vault] role_id_file: needed with auth = 'approle' (or role_id)",
        "[providers.vault] concurrency: must be a whole number",
        "VAULT_SKIP_VERIFY='maybe'",
    ):
        assert expected in message


def test_unknown_auth_and_option(bao: Any, home: Path) -> None:
    with pytest.raises(ConfigError, match="'userpass' is not a login method"):
        bao.provider(bao.environ(home), {"auth": "userpass"})
    with pytest.raises(ConfigError) as caught:
        bao.provider(bao.environ(home), {"tokne_file": "/x"})
    [problem] = caught.value.problems
    assert problem.startswith(
        "[providers.vault] 'tokne_file' is not an option of vault (did you mean 'token_file'? "
        "accepted: "
    )


def test_a_misspelt_login_method_is_one_line_with_a_suggestion(bao: Any, home: Path) -> None:
    options = {
        "auth": "app-role",
        "role_id_file": "/run/secrets/role_id",
        "secret_id_file": "/run/secrets/secret_id",
    }
    with pytest.raises(ConfigError) as caught:
        bao.provider(bao.environ(home), options)  # no token anywhere: not worth a word
    assert caught.value.problems == [
        "[providers.vault] auth: 'app-role' is not a login method (did you mean 'approle'? "
        "known: token, approle, kubernetes, jwt)"
    ]


def test_a_misspelt_option_gets_a_suggestion(bao: Any, reader: str, home: Path) -> None:
    options = {"auth": "approle", "role_id_path": "/x", "secret_id_file": "/y"}
    with pytest.raises(ConfigError) as caught:
        bao.provider(bao.environ(home, reader), options)
    [problem] = caught.value.problems  # one line, naming the table and the key first
    assert problem.startswith(
        "[providers.vault] 'role_id_path' is not an option of vault (did you mean 'role_id"
    )
    assert "role_id_file" in problem


@pytest.mark.parametrize(
    ("variable", "address", "expected"),
    [
        (
            "VAULT_ADDR",
            "vault.internal:8200",
            "VAULT_ADDR 'vault.internal:8200' has no scheme: write https://vault.internal:8200 "
            "(or http://vault.internal:8200 for a server without TLS",
        ),
        (
            "BAO_ADDR",
            "127.0.0.1:8200",
            "BAO_ADDR '127.0.0.1:8200' has no scheme: write https://127.0.0.1:8200",
        ),
        ("VAULT_ADDR", "ftp://vault", "VAULT_ADDR 'ftp://vault' is not an http:// or https:// URL"),
        ("VAULT_ADDR", "http://vault:port", "VAULT_ADDR 'http://vault:port' is not a URL"),
    ],
)
def test_a_malformed_address_is_a_config_error_at_once(
    home: Path, variable: str, address: str, expected: str
) -> None:
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        VaultProvider("vault", {}, {variable: address, "VAULT_TOKEN": "t", "HOME": str(home)})
    assert time.monotonic() - started < 5  # refused before any request, not retried
    assert any(problem.startswith(expected) for problem in caught.value.problems), caught.value


def test_a_malformed_address_in_the_table_names_the_key(home: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        VaultProvider("vault", {"address": "vault:8200"}, {"VAULT_TOKEN": "t", "HOME": str(home)})
    assert caught.value.problems[0].startswith(
        "[providers.vault] address: 'vault:8200' has no scheme: write https://vault:8200"
    )


def test_openbao_variables(bao: Any, reader: str, home: Path, planted: SecretRef) -> None:
    env = {"BAO_ADDR": bao.address, "BAO_TOKEN": reader, "HOME": str(home)}
    assert read(VaultProvider("vault", {}, env), planted) == b"auth-test-value"
    assert {"VAULT_TOKEN", "BAO_TOKEN"} <= VaultProvider.credential_variables
