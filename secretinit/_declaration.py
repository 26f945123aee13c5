"""What secrets a run declares: environment references and the TOML config, merged.

Every problem found while reading both sources is collected with where it
comes from (``file:line``, or the variable's name) and reported in one
:class:`ConfigError`, so a user fixes a config in one round trip.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from secretinit._errors import BadReference, ConfigError
from secretinit._reference import SecretRef, parse_reference, reference_scheme
from secretinit._supervisor import MIN_REFRESH_DELAY as MIN_REFRESH
from secretinit._supervisor import ON_CHANGE_CHOICES
from secretinit._supervisor import parse_on_change as on_change_action

DEFAULT_MODE = 0o400
EXPORTS = ("file", "value", "none")
FILE_NAME = re.compile(r"[A-Za-z0-9._-]{1,255}\Z")
OWN_VARIABLE_PREFIX = "SECRETINIT_"

_SECRET_KEYS = ("from", "template", "file", "mode", "export", "optional")
_DEFAULT_KEYS = (
    "dir",
    "mode",
    "group",
    "user",
    "timeout",
    "grace",
    "cleanup",
    "refresh",
    "on_change",
)
_TOP_KEYS = ("defaults", "secrets", "providers")


@dataclass(frozen=True)
class SecretSpec:
    """One declared secret: where its value comes from and where it goes.

    ``file`` is the file name inside the secret directory, or None when no
    file is written (``export = "value"`` or ``"none"`` without ``file``).
    """

    name: str
    source: str
    ref: SecretRef | None = None
    template: str | None = None
    file: str | None = None
    mode: int = DEFAULT_MODE
    export: str = "file"
    optional: bool = False

    @property
    def template_names(self) -> tuple[str, ...]:
        """The secret names a template's ``${NAME}`` placeholders use."""
        if self.template is None:
            return ()
        return tuple(dict.fromkeys(string.Template(self.template).get_identifiers()))


@dataclass
class Settings:
    """The ``[defaults]`` table; None means not set there."""

    dir: str | None = None
    mode: int = DEFAULT_MODE
    group: str | None = None
    user: str | None = None
    timeout: float | None = None
    grace: float | None = None
    cleanup: bool | None = None
    refresh: float | None = None
    on_change: str | None = None


@dataclass
class Declaration:
    """Every secret of a run, in order, with the settings and provider options."""

    secrets: list[SecretSpec] = field(default_factory=list)
    settings: Settings = field(default_factory=Settings)
    provider_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def schemes(self) -> list[str]:
        """The schemes the declared references use, in first-use order."""
        return list(dict.fromkeys(s.ref.scheme for s in self.secrets if s.ref is not None))

    def with_env_file(self, path: str) -> Declaration:
        """Every referenced secret resolved by its name from the .env file ``path``."""
        secrets = [
            replace(
                s, ref=SecretRef("env-file", path, s.name), source=f"{s.source}, via --env-file"
            )
            if s.ref is not None
            else s
            for s in self.secrets
        ]
        return Declaration(secrets, self.settings, self.provider_options)


def parse_duration(value: object, what: str) -> float:
    """Seconds from a number or a string such as ``30``, ``30s``, ``500ms``, ``2m``."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a duration such as 30, 30s, 500ms or 2m")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", value)
        if match is None:
            raise ValueError(f"{what} must be a duration such as 30, 30s, 500ms or 2m")
        unit = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[match.group(2) or "s"]
        seconds = float(match.group(1)) * unit
    else:
        raise ValueError(f"{what} must be a duration such as 30, 30s, 500ms or 2m")
    if not 0 <= seconds <= 86400 * 365:
        raise ValueError(f"{what} must be between 0 and one year")
    return seconds


def parse_refresh(value: object, what: str) -> float:
    """A refresh period: a duration of at least one second."""
    seconds = parse_duration(value, what)
    if seconds < MIN_REFRESH:
        raise ValueError(f"{what} must be at least 1s: a refresh is a whole fetch")
    return seconds


def parse_on_change(value: object, what: str) -> str:
    """An ``--on-change`` action in its normal form (``signal:HUP``, ``restart``, ...)."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string: {ON_CHANGE_CHOICES}")
    try:
        return on_change_action(value)
    except ValueError as err:
        raise ValueError(f"{what}: {err}") from None


def parse_mode(value: object, what: str) -> int:
    """A file mode from ``"0400"``, ``"400"`` or ``0o400``, refused if others get access."""
    if isinstance(value, str) and re.fullmatch(r"0?[0-7]{3}", value):
        mode = int(value, 8)
    elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0o777:
        mode = value
    else:
        raise ValueError(f'{what} must be an octal mode such as "0400" or "0440"')
    if mode & 0o007:
        raise ValueError(f"{what} {mode:04o} lets every user of the machine read or write it")
    if not mode & 0o400:
        raise ValueError(f"{what} {mode:04o} does not let its owner read it")
    return mode


def is_valid_file_name(name: str) -> bool:
    """One path component of ``[A-Za-z0-9._-]``: never ``.`` nor a ``/``, never from ``..``.

    Names starting with ``..`` are the directory's layout (``..data`` and the
    generations, as in a Kubernetes secret volume).
    """
    return bool(FILE_NAME.match(name)) and name != "." and not name.startswith("..")


def declare(
    environ: Mapping[str, str],
    config_path: str | None,
    handles_scheme: Callable[[str], bool],
) -> Declaration:
    """Merge the references in ``environ`` with the config file (which wins).

    ``handles_scheme`` says whether a scheme names a secret store; a variable
    whose value has another scheme (``https://...``) is not a secret.
    """
    problems: list[str] = []
    declaration = Declaration()
    if config_path is not None:
        declaration = _read_config(config_path, problems)
    declared = {spec.name for spec in declaration.secrets}
    for name in sorted(environ):
        value = environ[name]
        scheme = reference_scheme(value)
        if scheme is None or name.startswith(OWN_VARIABLE_PREFIX) or not handles_scheme(scheme):
            continue
        if name in declared:
            continue  # the config file's declaration wins
        source = f"environment variable {name}"
        if not is_valid_file_name(name):
            problems.append(f"{source}: the name is not a valid file name ([A-Za-z0-9._-])")
            continue
        try:
            ref = parse_reference(value)
        except BadReference as err:
            problems.append(f"{source}: {err}")
            continue
        declaration.secrets.append(
            SecretSpec(name, source, ref=ref, file=name, mode=declaration.settings.mode)
        )
    _check_cross_references(declaration.secrets, problems)
    if problems:
        raise ConfigError("the declared secrets are not valid:", problems)
    return declaration


def _check_cross_references(secrets: list[SecretSpec], problems: list[str]) -> None:
    by_name = {spec.name: spec for spec in secrets}
    owners: dict[str, str] = {}
    for spec in secrets:
        for needed in spec.template_names:
            other = by_name.get(needed)
            if other is None:
                problems.append(
                    f"{spec.source}: template uses ${{{needed}}}, which is not declared"
                )
            elif other.template is not None:
                problems.append(
                    f"{spec.source}: template uses ${{{needed}}}, which is itself a template"
                )
        if spec.file is not None:
            if spec.file in owners:
                problems.append(
                    f"{spec.source}: file {spec.file!r} is also written by {owners[spec.file]}"
                )
            owners[spec.file] = spec.name


def _read_config(path: str, problems: list[str]) -> Declaration:
    import tomllib

    try:
        with open(path, "rb") as stream:
            raw = stream.read()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except PermissionError:
        raise ConfigError(f"config file {path} is not readable: permission denied") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory") from None
    except OSError as err:
        raise ConfigError(f"config file {path} could not be read: {err.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: the config file is not UTF-8 text") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    return ConfigReader(path, text, problems).read(document)


class ConfigReader:
    """Validates a parsed config document, adding one problem per fault."""

    def __init__(self, path: str, text: str, problems: list[str]) -> None:
        self.path = path
        self.lines = text.splitlines()
        self.problems = problems

    def where(self, table: str, name: str | None = None) -> str:
        """``path:line`` of the table ``[table.name]`` (or of its first mention)."""
        needle = re.escape(table) + (
            r"\s*\.\s*[\"']?" + re.escape(name) + r"[\"']?" if name else ""
        )
        header = re.compile(r"\s*\[\s*" + needle + r"\s*\]")
        mention = re.compile(r"^\s*[\"']?" + re.escape(name or table) + r"[\"']?\s*[.=]")
        for pattern in (header, mention):
            for number, line in enumerate(self.lines, start=1):
                if pattern.match(line):
                    return f"{self.path}:{number}"
        return self.path

    def problem(self, table: str, name: str | None, message: str) -> None:
        label = f"[{table}.{name}]" if name else f"[{table}]"
        self.problems.append(f"{self.where(table, name)}: {label} {message}")

    def unknown_keys(
        self, table: str, name: str | None, data: dict[str, Any], known: tuple[str, ...]
    ) -> None:
        import difflib

        for key in data:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.problem(table, name, f"unknown key {key!r}{hint}")

    def read(self, document: dict[str, Any]) -> Declaration:
        for key in document:
            if key not in _TOP_KEYS:
                self.problems.append(
                    f"{self.where(key)}: unknown table [{key}] (expected {', '.join(_TOP_KEYS)})"
                )
        settings = self.read_defaults(self.table(document, "defaults"))
        secrets = [
            spec
            for name, body in self.table(document, "secrets").items()
            if (spec := self.read_secret(name, body, settings)) is not None
        ]
        providers: dict[str, dict[str, Any]] = {}
        for scheme, options in self.table(document, "providers").items():
            if isinstance(options, dict):
                providers[scheme] = options
            else:
                self.problem("providers", scheme, "must be a table")
        return Declaration(secrets, settings, providers)

    def table(self, document: dict[str, Any], key: str) -> dict[str, Any]:
        value = document.get(key, {})
        if not isinstance(value, dict):
            self.problem(key, None, "must be a table")
            return {}
        return value

    def read_defaults(self, data: dict[str, Any]) -> Settings:
        self.unknown_keys("defaults", None, data, _DEFAULT_KEYS)
        settings = Settings()
        for key in ("dir", "group", "user"):
            if key in data:
                if isinstance(data[key], str) and data[key]:
                    setattr(settings, key, data[key])
                else:
                    self.problem("defaults", None, f"{key} must be a non-empty string")
        if "cleanup" in data:
            if isinstance(data["cleanup"], bool):
                settings.cleanup = data["cleanup"]
            else:
                self.problem("defaults", None, "cleanup must be true or false")
        for key, parse in (
            ("mode", parse_mode),
            ("timeout", parse_duration),
            ("grace", parse_duration),
            ("refresh", parse_refresh),
            ("on_change", parse_on_change),
        ):
            if key in data:
                try:
                    setattr(settings, key, parse(data[key], key))
                except ValueError as err:
                    self.problem("defaults", None, str(err))
        return settings

    def read_secret(self, name: str, body: Any, settings: Settings) -> SecretSpec | None:
        source = f"{self.where('secrets', name)} [secrets.{name}]"
        if not is_valid_file_name(name):
            self.problem("secrets", name, "name is not valid: use letters, digits, '.', '_', '-'")
            return None
        if not isinstance(body, dict):
            self.problem("secrets", name, "must be a table with 'from' or 'template'")
            return None
        self.unknown_keys("secrets", name, body, _SECRET_KEYS)
        count = len(self.problems)
        ref = template = None
        if ("from" in body) == ("template" in body):
            self.problem("secrets", name, "needs exactly one of 'from' and 'template'")
        elif "from" in body:
            if isinstance(body["from"], str):
                try:
                    ref = parse_reference(body["from"])
                except BadReference as err:
                    self.problem("secrets", name, f"from: {err}")
            else:
                self.problem("secrets", name, "from must be a string")
        elif not isinstance(body["template"], str):
            self.problem("secrets", name, "template must be a string")
        elif not string.Template(body["template"]).is_valid():
            self.problem("secrets", name, "template has a '$' that is not $$, $NAME or ${NAME}")
        else:
            template = body["template"]
        export = body.get("export", "file")
        if export not in EXPORTS:
            self.problem("secrets", name, f"export must be one of {', '.join(EXPORTS)}")
        file_name = body.get("file")
        if file_name is not None and not (
            isinstance(file_name, str) and is_valid_file_name(file_name)
        ):
            self.problem(
                "secrets",
                name,
                "file must be one file name of [A-Za-z0-9._-], not . nor starting with ..",
            )
        if file_name is None and export == "file":
            file_name = name
        mode = settings.mode
        if "mode" in body:
            try:
                mode = parse_mode(body["mode"], "mode")
            except ValueError as err:
                self.problem("secrets", name, str(err))
        optional = body.get("optional", False)
        if not isinstance(optional, bool):
            self.problem("secrets", name, "optional must be true or false")
        if len(self.problems) > count:
            return None
        return SecretSpec(name, source, ref, template, file_name, mode, export, optional)
