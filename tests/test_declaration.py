"""Declaring secrets: the config file, environment references, and their merge."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secretinit import ConfigError, SecretRef
from secretinit._declaration import SecretSpec, declare, parse_duration, parse_mode

KNOWN = {"vault", "env-file", "docker-secret", "aws-sm"}


def handles(scheme: str) -> bool:
    return scheme in KNOWN


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "secretinit.toml"
    path.write_text(text)
    return str(path)


def test_environment_references_become_secrets() -> None:
    environ = {
        "DB_PASSWORD": "vault://secret/app/db#password",
        "HOME": "/root",
        "API_URL": "https://example.com",  # another scheme: not a secret
        "SECRETINIT_CONFIG": "vault://not-ours",  # our own variables are never secrets
    }
    declaration = declare(environ, None, handles)
    assert declaration.secrets == [
        SecretSpec(
            "DB_PASSWORD",
            "environment variable DB_PASSWORD",
            ref=SecretRef("vault", "secret/app/db", "password"),
            file="DB_PASSWORD",
        )
    ]


def test_config_declares_every_kind(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[defaults]
dir = "/run/app"
mode = "0440"
group = "app"
timeout = "1m"
grace = 5
cleanup = true

[secrets.DB_PASSWORD]
from = "vault://secret/app/db#password"

[secrets.TLS_KEY]
from = "docker-secret://tls_key"
file = "tls.key"
export = "none"
mode = 0o400

[secrets.DATABASE_URL]
template = "postgres://app:${DB_PASSWORD}@db/app"
export = "value"

[secrets.OPTIONAL_TOKEN]
from = "vault://secret/app/extra#token"
optional = true

[providers.vault]
auth = "approle"
""",
    )
    declaration = declare({}, path, handles)
    settings = declaration.settings
    assert (settings.dir, settings.mode, settings.group) == ("/run/app", 0o440, "app")
    assert (settings.timeout, settings.grace, settings.cleanup) == (60.0, 5.0, True)
    by_name = {spec.name: spec for spec in declaration.secrets}
    assert list(by_name) == ["DB_PASSWORD", "TLS_KEY", "DATABASE_URL", "OPTIONAL_TOKEN"]
    assert by_name["DB_PASSWORD"].mode == 0o440  # from [defaults]
    assert by_name["DB_PASSWORD"].file == "DB_PASSWORD"
    assert (by_name["TLS_KEY"].file, by_name["TLS_KEY"].export, by_name["TLS_KEY"].mode) == (
        "tls.key",
        "none",
        0o400,
    )
    assert by_name["DATABASE_URL"].file is None  # a value export writes no file
    assert by_name["DATABASE_URL"].template_names == ("DB_PASSWORD",)
    assert by_name["OPTIONAL_TOKEN"].optional
    assert by_name["DB_PASSWORD"].source.startswith(f"{path}:10 ")
    assert declaration.provider_options == {"vault": {"auth": "approle"}}
    assert declaration.schemes() == ["vault", "docker-secret"]


def test_config_wins_over_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, '[secrets.DB_PASSWORD]\nfrom = "docker-secret://db"\n')
    environ = {"DB_PASSWORD": "vault://secret/app/db#password", "OTHER": "vault://x#y"}
    declaration = declare(environ, path, handles)
    refs = {spec.name: str(spec.ref) for spec in declaration.secrets}
    assert refs == {"DB_PASSWORD": "docker-secret://db", "OTHER": "vault://x#y"}


def test_env_file_override_resolves_by_name(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[secrets.A]\nfrom = "vault://x#y"\n[secrets.B]\ntemplate = "b-${A}"\n',
    )
    declaration = declare({}, path, handles).with_env_file("dev.env")
    assert declaration.secrets[0].ref == SecretRef("env-file", "dev.env", "A")
    assert declaration.secrets[1].ref is None  # templates stay templates
    assert declaration.schemes() == ["env-file"]


BAD_CONFIGS = [
    ("[secrets.A]\nfrom = 'vault://x'\n[secrets.A]\n", "not valid TOML"),
    ("[secrets.A]\nform = 'vault://x'\n", "unknown key 'form' (did you mean 'from'?)"),
    ("[secrets.A]\n", "needs exactly one of 'from' and 'template'"),
    ("[secrets.A]\nfrom = 'x'\ntemplate = 'y'\n", "needs exactly one of"),
    ("[secrets.A]\nfrom = 'vault://'\n", "from: the location is empty"),
    ("[secrets.A]\nfrom = 3\n", "from must be a string"),
    ('[secrets."../etc"]\nfrom = "vault://x"\n', "name is not valid"),
    ('[secrets."a/b"]\nfrom = "vault://x"\n', "name is not valid"),
    ("[secrets.A]\nfrom = 'vault://x'\nfile = '../passwd'\n", "file must be one file name"),
    ("[secrets.A]\nfrom = 'vault://x'\nfile = '..'\n", "file must be one file name"),
    ("[secrets.A]\nfrom = 'vault://x'\nmode = '0644'\n", "lets every user"),
    ("[secrets.A]\nfrom = 'vault://x'\nmode = '0200'\n", "does not let its owner read"),
    ("[secrets.A]\nfrom = 'vault://x'\nmode = 'rw'\n", "octal mode"),
    ("[secrets.A]\nfrom = 'vault://x'\nexport = 'env'\n", "export must be one of"),
    ("[secrets.A]\nfrom = 'vault://x'\noptional = 'yes'\n", "optional must be true or false"),
    ("[secrets.A]\ntemplate = 'x-${B}'\n", "${B}, which is not declared"),
    ("[secrets.A]\ntemplate = 'x-$'\n", "template has a '$'"),
    (
        "[secrets.A]\ntemplate = 'a'\n[secrets.B]\ntemplate = '${A}'\n",
        "${A}, which is itself a template",
    ),
    (
        "[secrets.A]\nfrom = 'vault://x'\n[secrets.B]\nfrom = 'vault://y'\nfile = 'A'\n",
        "file 'A' is also written by A",
    ),
    ("[defaults]\ntimeout = 'soon'\n", "timeout must be a duration"),
    ("[defaults]\nmode = '0777'\n", "lets every user"),
    ("[defaults]\nwhatever = 1\n", "unknown key 'whatever'"),
    ("[secret.A]\nfrom = 'vault://x'\n", "unknown table [secret]"),
    ("secrets = 3\n", "[secrets] must be a table"),
    ("[providers]\nvault = 3\n", "[providers.vault] must be a table"),
]


@pytest.mark.parametrize(("text", "message"), BAD_CONFIGS)
def test_bad_config_is_reported_with_its_place(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        declare({}, path, handles)
    assert message in str(caught.value)
    assert path in str(caught.value)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[secrets.A]\nform = 'x'\n\n[secrets.B]\nfrom = 'vault://'\n\n"
        "[secrets.C]\nmode = '0666'\nfrom = 'vault://c'\n",
    )
    with pytest.raises(ConfigError) as caught:
        declare({"BAD-NAME!": "vault://x", "D": "vault://"}, path, handles)
    problems = caught.value.problems
    assert any(p.startswith(f"{path}:1: [secrets.A] unknown key 'form'") for p in problems)
    assert any(p.startswith(f"{path}:4: [secrets.B] from: the location is empty") for p in problems)
    assert any(p.startswith(f"{path}:7: [secrets.C] mode 0666") for p in problems)
    assert any(
        "environment variable BAD-NAME!: the name is not a valid file name" in p for p in problems
    )
    assert any("environment variable D: the location is empty" in p for p in problems)


def test_missing_and_unreadable_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        declare({}, str(tmp_path / "nope.toml"), handles)
    with pytest.raises(ConfigError, match="is a directory"):
        declare({}, str(tmp_path), handles)
    (tmp_path / "latin1.toml").write_bytes(b"# caf\xe9\n")
    with pytest.raises(ConfigError, match=r"latin1\.toml:1: the config file is not UTF-8"):
        declare({}, str(tmp_path / "latin1.toml"), handles)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (30, 30.0),
        (1.5, 1.5),
        ("30", 30.0),
        ("30s", 30.0),
        ("500ms", 0.5),
        ("2m", 120.0),
        ("1h", 3600.0),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text, "timeout") == seconds


@pytest.mark.parametrize("text", ["", "-1", "ten", "5d", True, None, "1e3"])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="timeout"):
        parse_duration(text, "timeout")


@pytest.mark.parametrize(
    ("text", "mode"), [("0400", 0o400), ("440", 0o440), (0o600, 0o600), ("0750", 0o750)]
)
def test_modes(text: object, mode: int) -> None:
    assert parse_mode(text, "mode") == mode


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=300)
@given(st.text())
def test_arbitrary_config_text_is_accepted_or_reported(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.toml"
    path.write_text(text, encoding="utf-8")
    try:
        declare({}, str(path), handles)
    except ConfigError as err:
        assert str(err)


toml_values = st.recursive(
    st.none().map(lambda _: "''")
    | st.integers().map(str)
    | st.text().map(repr).map(lambda s: s.replace("\\x", "\\u00")),
    lambda inner: st.lists(inner, max_size=3).map(lambda items: "[" + ", ".join(items) + "]"),
    max_leaves=5,
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=300)
@given(
    st.sampled_from(
        ["secrets.A", 'secrets."a b"', "defaults", "providers.vault", "secrets", "other"]
    ),
    st.sampled_from(
        ["from", "template", "file", "mode", "export", "optional", "dir", "timeout", "x"]
    ),
    toml_values,
)
def test_structured_fuzz_of_config(tmp_path: Path, table: str, key: str, value: str) -> None:
    path = tmp_path / "fuzz.toml"
    path.write_text(f"[{table}]\n{key} = {value}\n", encoding="utf-8")
    try:
        declare({}, str(path), handles)
    except ConfigError as err:
        assert str(err)
