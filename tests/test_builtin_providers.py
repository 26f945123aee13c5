"""The two built-in providers: the contract suite, then what is particular to each."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from secretinit import AccessDenied, BadReference, FetchError, NotFound, SecretRef
from secretinit._docker_secret import DockerSecretProvider
from secretinit._env_file import EnvFileProvider
from secretinit.testing import ProviderContract


def escape_single_quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


class EnvFileStore:
    """.env files in a directory; every planted secret is a line of one file."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "secrets.env"
        self.path.write_text("# planted by the contract suite\n")
        self.denied_path = directory / "denied.env"
        self.denied_path.write_text("DENIED=x\n")
        self.denied_path.chmod(0)

    def provider(self) -> EnvFileProvider:
        return EnvFileProvider("env-file", {}, {})

    @staticmethod
    def key(name: str) -> str:
        return name.upper().replace("-", "_")

    def plant(self, name: str, value: bytes) -> SecretRef:
        with self.path.open("a") as env_file:
            env_file.write(f"{self.key(name)}='{escape_single_quoted(value.decode())}'\n")
        return SecretRef("env-file", str(self.path), self.key(name))

    def plant_document(self, name: str, document: Mapping[str, str]) -> SecretRef:
        raise NotImplementedError("an env file has no documents")

    def missing(self, name: str) -> SecretRef:
        return SecretRef("env-file", str(self.path), self.key(name) + "_MISSING")

    def denied(self, name: str) -> SecretRef:
        return SecretRef("env-file", str(self.denied_path), "DENIED")


class DockerSecretStore:
    """A directory laid out as Docker mounts secrets: one file per secret."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory / "secrets"
        self.directory.mkdir()
        (self.directory / "denied").write_text("x")
        (self.directory / "denied").chmod(0)

    def provider(self) -> DockerSecretProvider:
        return DockerSecretProvider("docker-secret", {"dir": str(self.directory)}, {})

    def plant(self, name: str, value: bytes) -> SecretRef:
        (self.directory / name).write_bytes(value)
        return SecretRef("docker-secret", name)

    def plant_document(self, name: str, document: Mapping[str, str]) -> SecretRef:
        import json

        return self.plant(name, json.dumps(document).encode())

    def missing(self, name: str) -> SecretRef:
        return SecretRef("docker-secret", name + "-missing")

    def denied(self, name: str) -> SecretRef:
        return SecretRef("docker-secret", "denied")


@pytest.mark.usefixtures("unprivileged")
class TestEnvFileContract(ProviderContract):
    supports_binary = False  # a .env file holds text
    supports_documents = False  # #KEY names a variable, not a JSON field

    @pytest.fixture
    def store(self, shared_dir: Path) -> EnvFileStore:  # type: ignore[override]
        return EnvFileStore(shared_dir)


@pytest.mark.usefixtures("unprivileged")
class TestDockerSecretContract(ProviderContract):
    @pytest.fixture
    def store(self, shared_dir: Path) -> DockerSecretStore:  # type: ignore[override]
        return DockerSecretStore(shared_dir)


def fetch(
    provider: EnvFileProvider | DockerSecretProvider, *refs: SecretRef
) -> list[bytes | FetchError]:
    for ref in refs:
        provider.check_reference(ref)
    result = provider.fetch(list(refs), 5.0)
    return [result[ref] for ref in refs]


ENV_FILE_CASES = [
    # (line in the file, key, expected value)
    ("PLAIN=value", "PLAIN", b"value"),
    ("export EXPORTED=value", "EXPORTED", b"value"),
    ("SPACED = value  # comment", "SPACED", b"value"),
    ("SINGLE='a $b ${c} \\' d'", "SINGLE", b"a $b ${c} ' d"),
    ('DOUBLE="line1\\nline2\\t\\"q\\""', "DOUBLE", b'line1\nline2\t"q"'),
    ('INTERPOLATED="${HOME}"', "INTERPOLATED", b"${HOME}"),  # never expanded
    ("EMPTY=", "EMPTY", b""),
    ("UNICODE=pässwörd", "UNICODE", "pässwörd".encode()),
    ("MULTI='a\nb'", "MULTI", b"a\nb"),
]


@pytest.mark.parametrize(("line", "key", "expected"), ENV_FILE_CASES)
def test_env_file_parsing(tmp_path: Path, line: str, key: str, expected: bytes) -> None:
    path = tmp_path / "dev.env"
    path.write_text(f"# comment\n{line}\nOTHER=x\n")
    assert fetch(EnvFileProvider("env-file"), SecretRef("env-file", str(path), key)) == [expected]


def test_env_file_last_assignment_wins(tmp_path: Path) -> None:
    path = tmp_path / "dev.env"
    path.write_text("K=first\nK=second\n")
    assert fetch(EnvFileProvider("env-file"), SecretRef("env-file", str(path), "K")) == [b"second"]


def test_env_file_relative_path_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dev.env").write_text("K=v\n")
    monkeypatch.chdir(tmp_path)
    assert fetch(EnvFileProvider("env-file"), SecretRef("env-file", "dev.env", "K")) == [b"v"]


def test_env_file_errors_say_what_and_where(tmp_path: Path) -> None:
    path = tmp_path / "dev.env"
    path.write_text("GOOD=1\nnot a binding line 'unterminated\nNOVALUE\n")
    missing, novalue, absent_file, directory = fetch(
        EnvFileProvider("env-file"),
        SecretRef("env-file", str(path), "ABSENT"),
        SecretRef("env-file", str(path), "NOVALUE"),
        SecretRef("env-file", str(tmp_path / "nope.env"), "K"),
        SecretRef("env-file", str(tmp_path), "K"),
    )
    assert isinstance(missing, NotFound)
    assert str(missing) == f"ABSENT is not set in {path} (lines that could not be parsed: 2)"
    assert isinstance(novalue, NotFound)
    assert "has no value" in str(novalue)
    assert isinstance(absent_file, NotFound)
    assert "does not exist" in str(absent_file)
    assert isinstance(directory, FetchError)
    assert "is a directory" in str(directory)


def test_env_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "dev.env"
    path.write_bytes(b"A=1\nB=caf\xe9\n")
    [result] = fetch(EnvFileProvider("env-file"), SecretRef("env-file", str(path), "A"))
    assert isinstance(result, FetchError)
    assert str(result) == f"env file {path} is not UTF-8 text (line 2)"


@pytest.mark.usefixtures("unprivileged")
def test_unreadable_env_file_is_access_denied(shared_dir: Path) -> None:
    path = shared_dir / "locked.env"
    path.write_text("K=top-secret-value\n")
    path.chmod(0)
    [result] = fetch(EnvFileProvider("env-file"), SecretRef("env-file", str(path), "K"))
    assert isinstance(result, AccessDenied)
    assert "permission denied" in str(result)
    assert "top-secret-value" not in str(result)


def test_env_file_needs_a_key() -> None:
    with pytest.raises(BadReference, match="needs #KEY"):
        EnvFileProvider("env-file").check_reference(SecretRef("env-file", "dev.env"))


@pytest.mark.parametrize("name", ["..", ".hidden", "a/b", "../etc/passwd", "x" * 256])
def test_docker_secret_names_are_one_component(name: str) -> None:
    with pytest.raises(BadReference, match="not valid"):
        DockerSecretProvider("docker-secret").check_reference(SecretRef("docker-secret", name))


def test_docker_secret_directory_settings(tmp_path: Path) -> None:
    assert str(DockerSecretProvider("docker-secret", {}, {}).directory) == "/run/secrets"
    environ = {"SECRETINIT_DOCKER_SECRETS_DIR": str(tmp_path)}
    assert DockerSecretProvider("docker-secret", {}, environ).directory == tmp_path
    configured = DockerSecretProvider("docker-secret", {"dir": "/elsewhere"}, environ)
    assert str(configured.directory) == "/elsewhere"


def test_docker_secret_follows_kubernetes_style_symlinks(tmp_path: Path) -> None:
    data = tmp_path / "..data"
    data.mkdir()
    (data / "token").write_bytes(b"k8s-value")
    (tmp_path / "token").symlink_to("..data/token")
    provider = DockerSecretProvider("docker-secret", {"dir": str(tmp_path)})
    assert fetch(provider, SecretRef("docker-secret", "token")) == [b"k8s-value"]


def test_unknown_provider_option_is_refused() -> None:
    from secretinit import ConfigError

    with pytest.raises(ConfigError, match="'dri' is not an option of docker-secret"):
        DockerSecretProvider("docker-secret", {"dri": "/x"})
    with pytest.raises(ConfigError, match="must be a string"):
        DockerSecretProvider("docker-secret", {"dir": 3})
