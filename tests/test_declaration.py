"""Declaring secrets: the config file, environment references, and their merge."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secretinit import ConfigError, SecretRef
from secretinit._declaration import SecretSpec, declare, parse_duration, parse_mode
from secretinit._registry import ProviderRegistry

REGISTRY = ProviderRegistry()


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "secretinit.toml"
    path.write_text(text)
    return str(path)


def problems_of(environ: dict[str, str], path: str | None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        declare(environ, path, REGISTRY)
    return caught.value.problems


def test_environment_references_become_secrets() -> None:
    environ = {
        "DB_PASSWORD": "vault://secret/app/db#password",
        "HOME": "/root",
        "API_URL": "https://example.com",  # another scheme: not a secret
        "SECRETINIT_CONFIG": "vault://not-ours",  # our own variables are never secrets
    }
    declaration = declare(environ, None, REGISTRY)
    assert declaration.secrets == [
        SecretSpec(
            "DB_PASSWORD",
            "environment variable DB_PASSWORD",
            ref=SecretRef("vault", "secret/app/db", "password"),
            file="DB_PASSWORD",
            ref_source="environment variable DB_PASSWORD",
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
mode = "0400"

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
    declaration = declare({}, path, REGISTRY)
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
    assert by_name["DB_PASSWORD"].source == f"{path}:10 [secrets.DB_PASSWORD]"
    assert by_name["DB_PASSWORD"].ref_source == f"{path}:11: [secrets.DB_PASSWORD] from"
    assert declaration.provider_options == {"vault": {"auth": "approle"}}
    assert declaration.schemes() == ["vault", "docker-secret"]
    assert declaration.place("providers", "vault", "auth") == f"{path}:28"


def test_config_wins_over_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, '[secrets.DB_PASSWORD]\nfrom = "docker-secret://db"\n')
    environ = {"DB_PASSWORD": "vault://secret/app/db#password", "OTHER": "vault://x#y"}
    declaration = declare(environ, path, REGISTRY)
    refs = {spec.name: str(spec.ref) for spec in declaration.secrets}
    assert refs == {"DB_PASSWORD": "docker-secret://db", "OTHER": "vault://x#y"}


def test_env_file_override_resolves_by_name(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[secrets.A]\nfrom = "vault://x#y"\n[secrets.B]\ntemplate = "b-${A}"\n',
    )
    declaration = declare({}, path, REGISTRY).with_env_file("/abs/dev.env")
    assert declaration.secrets[0].ref == SecretRef("env-file", "/abs/dev.env", "A")
    assert declaration.secrets[0].declared == SecretRef("vault", "x", "y")
    assert declaration.secrets[0].origin == "vault://x#y via env-file:///abs/dev.env#A"
    assert declaration.secrets[1].ref is None  # templates stay templates
    assert declaration.schemes() == ["env-file"]


# (config, the expected problem, the line it names)
BAD_CONFIGS = [
    ("[secrets.A]\nfrom = 'vault://x'\n[secrets.A]\n", "not valid TOML", None),
    (
        "[secrets.A]\nform = 'vault://x'\n",
        "[secrets.A] unknown key 'form' (did you mean 'from'?)",
        2,
    ),
    ("[secrets.A]\n", "[secrets.A] needs exactly one of 'from' and 'template'", 1),
    ("[secrets.A]\nfrom = 'x'\ntemplate = 'y'\n", "needs exactly one of", 1),
    ("[secrets.A]\n\nfrom = 'vault://'\n", "[secrets.A] from: the location is empty", 3),
    ("[secrets.A]\nfrom = 3\n", "from must be a string", 2),
    ('[secrets."../etc"]\nfrom = "vault://x"\n', "the name '../etc' is not a valid environment", 1),
    ('[secrets."a/b"]\nfrom = "vault://x"\n', "is not a valid environment variable name", 1),
    ('[secrets."my-key"]\nfrom = "vault://x"\n', "use letters, digits and '_'", 1),
    ('[secrets.1ABC]\nfrom = "vault://x"\n', "not starting with a digit", 1),
    (
        "[secrets.A]\nfrom = 'vault://x'\nfile = '../evil'\n",
        "[secrets.A] file '../evil' is not one file name",
        3,
    ),
    ("[secrets.A]\nfrom = 'vault://x'\nfile = 'sub/x'\n", "file 'sub/x' is not one file", 3),
    ("[secrets.A]\nfrom = 'vault://x'\nfile = '/etc/x'\n", "file '/etc/x' is not one", 3),
    ("[secrets.A]\nfrom = 'vault://x'\nfile = '..'\n", "file '..' is not one file name", 3),
    ("[secrets.A]\nfrom = 'vault://x'\nfile = 3\n", "file must be a string", 3),
    ("[secrets.A]\nfrom = 'vault://x'\nmode = '0644'\n", "lets every user", 3),
    ("[secrets.A]\nfrom = 'vault://x'\nmode = '0200'\n", "does not let its owner read", 3),
    ("[secrets.A]\nfrom = 'vault://x'\nmode = 'rw'\n", "octal mode", 3),
    ("[secrets.A]\nfrom = 'vault://x'\nmode = 400\n", 'write it as a string: "0400"', 3),
    ("[secrets.A]\nfrom = 'vault://x'\nmode = 0o440\n", 'write it as a string: "0440"', 3),
    ("[secrets.A]\nfrom = 'vault://x'\nmode = 0o640 # x\n", 'write it as a string: "0640"', 3),
    ("[secrets.A]\nfrom = 'vault://x'\nexport = 'env'\n", "export must be one of", 3),
    ("[secrets.A]\nfrom = 'vault://x'\noptional = 'yes'\n", "optional must be true or false", 3),
    ("[secrets.A]\ntemplate = 'x-${B}'\n", "${B}, which is not declared", 2),
    (
        "[secrets.DB_PASSWORD]\nfrom = 'vault://x'\n[secrets.C]\ntemplate = '${DB_PASWORD}'\n",
        "${DB_PASWORD}, which is not declared (did you mean 'DB_PASSWORD'?)",
        4,
    ),
    ("[secrets.A]\ntemplate = 'x-$'\n", "template has a '$'", 2),
    (
        "[secrets.A]\ntemplate = 'a'\n[secrets.B]\ntemplate = '${A}'\n",
        "${A}, which is itself a template",
        4,
    ),
    (
        "[secrets.A]\nfrom = 'vault://x'\n[secrets.B]\nfrom = 'vault://y'\nfile = 'A'\n",
        "file 'A' is also written by A",
        5,
    ),
    ("[defaults]\ntimeout = 'soon'\n", "[defaults] timeout must be a duration", 2),
    ("[defaults]\n\nmode = '0777'\n", "lets every user", 3),
    ("[defaults]\nmode = 400\n", 'mode is a TOML number: write it as a string: "0400"', 2),
    ("[defaults]\nwhatever = 1\n", "unknown key 'whatever'", 2),
    ("[defaults]\ntimeout = 1\nuser = ''\n", "user must be a non-empty string", 3),
    ("[secret.A]\nfrom = 'vault://x'\n", "unknown table [secret] (did you mean [secrets]?)", 1),
    ("[defaults]\n[default.x]\n", "unknown table [default] (did you mean [defaults]?)", 2),
    ("secrets = 3\n", "[secrets] must be a table", 1),
    ("[providers]\nvault = 3\n", "[providers.vault] must be a table", 2),
]


@pytest.mark.parametrize(("text", "message", "line"), BAD_CONFIGS)
def test_bad_config_is_reported_at_the_key_at_fault(
    tmp_path: Path, text: str, message: str, line: int | None
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        declare({}, path, REGISTRY)
    assert message in str(caught.value)
    if line is None:
        assert path in str(caught.value)
    else:
        (problem,) = (p for p in caught.value.problems if message in p)
        assert problem.startswith(f"{path}:{line}: "), problem


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[secrets.A]\nform = 'x'\n\n[secrets.B]\nfrom = 'vault://'\n\n"
        "[secrets.C]\nmode = '0666'\nfrom = 'vault://c'\n",
    )
    problems = problems_of({"BAD-NAME": "vault://x", "D": "vault://"}, path)
    assert f"{path}:2: [secrets.A] unknown key 'form' (did you mean 'from'?)" in problems
    assert f"{path}:5: [secrets.B] from: the location is empty: expected " in " ".join(problems)
    assert any(p.startswith(f"{path}:8: [secrets.C] mode 0666") for p in problems)
    assert any(
        "environment variable BAD-NAME: the name is not a valid environment variable name" in p
        for p in problems
    )
    assert any("environment variable D: the location is empty" in p for p in problems)


def test_integer_mode_is_refused_whatever_its_digits() -> None:
    """Issue 14, item 3: ``mode = 400`` was read as decimal, a group-writable 0620."""
    for value, written, hint in (
        (400, "400", "0400"),
        (440, None, "0440"),
        (0o400, "0o400", "0400"),
        (0o600, None, "0600"),
        (0o640, "0o640", "0640"),
    ):
        with pytest.raises(ValueError, match=f'write it as a string: "{hint}"'):
            parse_mode(value, "mode", written)


@pytest.mark.parametrize(
    ("value", "meant"),
    [
        ("awssm://prod/db", "aws-sm"),
        ("aws_sm://prod/db", "aws-sm"),
        ("Vault://secret/db#pw", "vault"),
        ("VAULT://secret/db#pw", "vault"),
        ("vault:/secret/db#pw", "vault"),
        ("vualt://secret/db#pw", "vault"),
        ("envfile://dev.env#X", "env-file"),
        ("azurekv://v/s", "azure-kv"),
        ("dockersecret://db", "docker-secret"),
    ],
)
def test_a_near_miss_of_a_scheme_fails_closed(value: str, meant: str) -> None:
    """Issue 14, item 6: a typo in a scheme must not reach the application as its password."""
    (problem,) = problems_of({"DB_PASSWORD": value}, None)
    assert problem.startswith("environment variable DB_PASSWORD: ")
    assert f"did you mean {meant}://?" in problem
    assert value not in problem  # the scheme is quoted, not the whole value


@pytest.mark.parametrize(
    "value",
    [
        "https://example.com/x",
        "HTTPS://example.com",
        "postgres://u:p@db/app",
        "redis://cache:6379",
        "s3://bucket/key",
        "/usr/local/bin:/usr/bin",
        "vault:8200",
        "consul://agent",
        "plain text",
        "",
    ],
)
def test_other_values_pass_through(value: str) -> None:
    assert declare({"SOME_VALUE": value}, None, REGISTRY).secrets == []


def test_many_secrets_report_the_right_lines_near_the_end(tmp_path: Path) -> None:
    """Issue 11: one index of the file, places still exact for a config of thousands."""
    count = 3000
    lines = ["[defaults]", 'mode = "0400"', ""]
    for i in range(count):
        lines += [f"[secrets.S{i}]", f'from = "vault://app/s{i}#k"', ""]
    # Faults in the last tables, on the key lines after their headers.
    lines += ["[secrets.LAST]", 'from = "vault://app/last#k"', "mode = 644", 'form = "x"']
    path = write(tmp_path, "\n".join(lines) + "\n")
    header = 3 + 3 * count + 1
    problems = problems_of({}, path)
    assert problems == [
        f"{path}:{header + 3}: [secrets.LAST] unknown key 'form' (did you mean 'from'?)",
        f'{path}:{header + 2}: [secrets.LAST] mode is a TOML number: write it as a string: "0644"',
    ]


def test_missing_and_unreadable_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        declare({}, str(tmp_path / "nope.toml"), REGISTRY)
    with pytest.raises(ConfigError, match="is a directory"):
        declare({}, str(tmp_path), REGISTRY)
    (tmp_path / "latin1.toml").write_bytes(b"# caf\xe9\n")
    with pytest.raises(ConfigError, match=r"latin1\.toml:1: the config file is not UTF-8"):
        declare({}, str(tmp_path / "latin1.toml"), REGISTRY)


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


@pytest.mark.parametrize(("text", "mode"), [("0400", 0o400), ("440", 0o440), ("0750", 0o750)])
def test_modes(text: object, mode: int) -> None:
    assert parse_mode(text, "mode") == mode


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=300)
@given(st.text())
def test_arbitrary_config_text_is_accepted_or_reported(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.toml"
    path.write_text(text, encoding="utf-8")
    try:
        declare({}, str(path), REGISTRY)
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
        declare({}, str(path), REGISTRY)
    except ConfigError as err:
        assert str(err)
