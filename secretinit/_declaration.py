"""What secrets a run declares: environment references and the TOML config, merged.

Every problem found while reading both sources is collected with where it
comes from (``file:line`` of the key at fault, or the variable's name). The
start adds the problems of schemes and provider options to the same list and
reports them all in one :class:`ConfigError`, so a user fixes a config in one
round trip.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from secretinit._errors import BadReference, ConfigError, unreadable
from secretinit._reference import SecretRef, parse_reference, reference_scheme, written_scheme
from secretinit._suggest import closest, did_you_mean
from secretinit._supervisor import MIN_REFRESH_DELAY as MIN_REFRESH
from secretinit._supervisor import ON_CHANGE_CHOICES
from secretinit._supervisor import parse_on_change as on_change_action

if TYPE_CHECKING:
    from secretinit._toml_places import TomlPlaces

DEFAULT_MODE = 0o400
EXPORTS = ("file", "value", "none")
FILE_NAME = re.compile(r"[A-Za-z0-9._-]{1,255}\Z")
OWN_VARIABLE_PREFIX = "SECRETINIT_"
PROBLEMS_HEADER = "the declared secrets are not valid:"

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
_BARE_KEY = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_NAME_RULE = "letters, digits and '_', not starting with a digit"


class SchemeTable(Protocol):
    """What the declaration asks of the provider registry."""

    def handles(self, scheme: str) -> bool:
        """Whether ``scheme`` names a secret store."""

    def misspelt(self, written: str, separator: str = "://") -> str | None:
        """The known scheme a near miss such as ``awssm`` meant, if any."""


@dataclass(frozen=True)
class SecretSpec:
    """One declared secret: where its value comes from and where it goes.

    ``file`` is the file name inside the secret directory, or None when no
    file is written (``export = "value"`` or ``"none"`` without ``file``).
    ``ref_source`` says where the reference is written (``c.toml:4:
    [secrets.DB] from``); ``declared`` is the reference the declaration names
    when ``--env-file`` resolves the secret through ``ref`` instead.
    """

    name: str
    source: str
    ref: SecretRef | None = None
    template: str | None = None
    file: str | None = None
    mode: int = DEFAULT_MODE
    export: str = "file"
    optional: bool = False
    ref_source: str | None = None
    declared: SecretRef | None = None

    @property
    def template_names(self) -> tuple[str, ...]:
        """The secret names a template's ``${NAME}`` placeholders use."""
        if self.template is None:
            return ()
        return tuple(dict.fromkeys(string.Template(self.template).get_identifiers()))

    @property
    def reference_source(self) -> str:
        """Where the reference is written, for a problem about it."""
        return self.ref_source or self.source

    @property
    def origin(self) -> str | None:
        """The reference as reports show it (``vault://x#k via env-file://...``), if any."""
        if self.ref is None:
            return None
        if self.declared is not None:
            return f"{self.declared} via {self.ref}"
        return str(self.ref)


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
    """Every secret of a run, in order, with the settings and provider options.

    ``problems`` collects what is wrong with it, each line with its place;
    ``config_path`` and ``places`` locate the config file's keys for the
    problems found later (a provider's options).
    """

    secrets: list[SecretSpec] = field(default_factory=list)
    settings: Settings = field(default_factory=Settings)
    provider_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    config_path: str | None = None
    places: TomlPlaces | None = None
    #: Secrets of the config left out for their own problems: a template that
    #: names one is not reported again for it.
    rejected: set[str] = field(default_factory=set)

    def schemes(self) -> list[str]:
        """The schemes the declared references use, in first-use order."""
        return list(self.by_scheme())

    def by_scheme(self) -> dict[str, list[SecretSpec]]:
        """The referenced secrets by the scheme of their reference, in first-use order."""
        found: dict[str, list[SecretSpec]] = {}
        for spec in self.secrets:
            if spec.ref is not None:
                found.setdefault(spec.ref.scheme, []).append(spec)
        return found

    def place(self, *keys: str) -> str | None:
        """``file:line`` of ``keys`` (or of their nearest written parent) in the config file."""
        if self.places is None:
            return None
        line = self.places.line(*keys)
        return f"{self.config_path}:{line}" if line else self.config_path

    def with_env_file(self, path: str) -> Declaration:
        """Every referenced secret resolved by its name from the .env file ``path``."""
        secrets = [
            replace(s, ref=SecretRef("env-file", path, s.name), declared=s.ref)
            if s.ref is not None
            else s
            for s in self.secrets
        ]
        return replace(self, secrets=secrets)


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


def parse_mode(value: object, what: str, written: str | None = None) -> int:
    """A file mode from ``"0400"`` or ``"400"``, refused if others get access.

    A TOML number is refused: ``mode = 400`` is decimal 400 (octal 0620, a
    group-writable file), and ``0o400`` cannot be told from ``256`` once
    parsed. ``written``, the number as the file spells it, picks the hint.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(
            f'{what} is a TOML number: write it as a string: "{_mode_hint(value, written)}"'
        )
    if isinstance(value, str) and re.fullmatch(r"0?[0-7]{3}", value):
        mode = int(value, 8)
    else:
        raise ValueError(f'{what} must be an octal mode such as "0400" or "0440"')
    if mode & 0o007:
        raise ValueError(f"{what} {mode:04o} lets every user of the machine read or write it")
    if not mode & 0o400:
        raise ValueError(f"{what} {mode:04o} does not let its owner read it")
    return mode


def _mode_hint(value: int, written: str | None) -> str:
    """The string a number written as a mode most likely meant: ``400`` and ``0o400`` -> 0400."""
    text = (written or str(value)).replace("_", "").lower()
    if text.startswith("0o"):
        return text[2:].zfill(4)
    if text.isdigit() and len(text) <= 4 and set(text) <= set("01234567"):
        return text.zfill(4)  # the digits of an octal mode, written as a decimal number
    return f"{value:04o}"


def is_valid_file_name(name: str) -> bool:
    """One path component of ``[A-Za-z0-9._-]``: never ``.`` nor a ``/``, never from ``..``.

    Names starting with ``..`` are the directory's layout (``..data`` and the
    generations, as in a Kubernetes secret volume).
    """
    return bool(FILE_NAME.match(name)) and name != "." and not name.startswith("..")


def is_secret_name(name: str) -> bool:
    """An environment variable name a shell can read: ``[A-Za-z_][A-Za-z0-9_]*``.

    The application gets ``NAME_FILE`` (or ``NAME``), and a template names
    the secret as ``${NAME}``: both need such a name.
    """
    return name.isascii() and name.isidentifier() and len(name) <= 250


def declare(
    environ: Mapping[str, str], config_path: str | None, schemes: SchemeTable
) -> Declaration:
    """Merge the references in ``environ`` with the config file (which wins).

    Raises one :class:`ConfigError` listing every problem; see
    :func:`collect_declaration` for the form that leaves them to the caller.
    """
    declaration = collect_declaration(environ, config_path, schemes)
    if declaration.problems:
        raise ConfigError(PROBLEMS_HEADER, declaration.problems)
    return declaration


def collect_declaration(
    environ: Mapping[str, str], config_path: str | None, schemes: SchemeTable
) -> Declaration:
    """Merge the references in ``environ`` with the config file; problems in ``.problems``.

    ``schemes`` says whether a scheme names a secret store: a variable whose
    value has another scheme (``https://...``) is not a secret, unless it is
    a near miss of one (``awssm://``), which is a problem rather than a value
    the application would take for its password. A file that cannot be read
    at all raises :class:`ConfigError` at once.
    """
    problems: list[str] = []
    declaration = Declaration(problems=problems)
    if config_path is not None:
        declaration = _open_config(config_path, problems).declaration
    declared = {spec.name for spec in declaration.secrets}
    for name in sorted(environ):
        if name.startswith(OWN_VARIABLE_PREFIX) or name in declared:
            continue  # our own settings; or the config file's declaration wins
        value = environ[name]
        scheme = reference_scheme(value)
        source = f"environment variable {name}"
        if scheme is None or not schemes.handles(scheme):
            written = written_scheme(value)
            meant = schemes.misspelt(*written) if written else None
            if written and meant:
                problems.append(
                    f"{source}: {''.join(written)}... is not a secret reference as written: "
                    f"did you mean {meant}://? (refused rather than passed on to the "
                    "application as its value)"
                )
            continue
        if not is_secret_name(name):
            problems.append(
                f"{source}: the name is not a valid environment variable name "
                f"({_NAME_RULE}), so the application could not read {name}_FILE"
            )
            continue
        try:
            ref = parse_reference(value)
        except BadReference as err:
            problems.append(f"{source}: {err}")
            continue
        declaration.secrets.append(
            SecretSpec(
                name,
                source,
                ref=ref,
                file=name,
                mode=declaration.settings.mode,
                ref_source=source,
            )
        )
    _check_cross_references(declaration, problems)
    return declaration


def _check_cross_references(declaration: Declaration, problems: list[str]) -> None:
    by_name = {spec.name: spec for spec in declaration.secrets}
    owners: dict[str, str] = {}
    for spec in declaration.secrets:
        for needed in spec.template_names:
            other = by_name.get(needed)
            if other is None and needed in declaration.rejected:
                continue
            if other is None:
                problems.append(
                    f"{_key_source(declaration, spec, 'template')} template uses ${{{needed}}}, "
                    f"which is not declared{did_you_mean(needed, by_name)}"
                )
            elif other.template is not None:
                problems.append(
                    f"{_key_source(declaration, spec, 'template')} template uses "
                    f"${{{needed}}}, which is itself a template"
                )
        if spec.file is not None:
            if spec.file in owners:
                problems.append(
                    f"{_key_source(declaration, spec, 'file')} file {spec.file!r} is also "
                    f"written by {owners[spec.file]}"
                )
            owners[spec.file] = spec.name


def _key_source(declaration: Declaration, spec: SecretSpec, key: str) -> str:
    """``c.toml:7: [secrets.X]`` at ``key``'s line for a secret of the config; else its source."""
    places = declaration.places
    if places is None or ("secrets", spec.name) not in places:
        return f"{spec.source}:"  # an environment reference
    return f"{declaration.place('secrets', spec.name, key)}: {_label('secrets', spec.name)}"


def _open_config(path: str, problems: list[str]) -> ConfigReader:
    import os
    import tomllib

    try:
        with open(path, "rb") as stream:
            raw = stream.read()
    except OSError as err:
        raise ConfigError(f"config file {unreadable(os.path.abspath(path), err)}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: the config file is not UTF-8 text") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    reader = ConfigReader(path, text, problems)
    reader.read(document)
    return reader


def _label(*keys: str) -> str:
    """``[secrets.DB]``, quoting a part that is not a bare TOML key (``[secrets."a b"]``)."""
    parts = (k if k and set(k) <= _BARE_KEY else _quoted(k) for k in keys)
    return f"[{'.'.join(parts)}]"


def _quoted(key: str) -> str:
    import json  # only for a name that needs quoting

    return json.dumps(key, ensure_ascii=False)


class ConfigReader:
    """Validates a parsed config document, adding one problem per fault at its key's line."""

    def __init__(self, path: str, text: str, problems: list[str]) -> None:
        self.path = path
        self.text = text
        self._lines: list[str] | None = None  # split only if a hint needs it
        from secretinit._toml_places import TomlPlaces  # only a config file needs it

        self.places = TomlPlaces(text)
        self.problems = problems
        self.declaration = Declaration(problems=problems, config_path=path, places=self.places)

    def place(self, *keys: str) -> str:
        """``path:line`` of ``keys``, or of the nearest parent written in the file."""
        line = self.places.line(*keys)
        return f"{self.path}:{line}" if line else self.path

    def problem(self, keys: tuple[str, ...], table: tuple[str, ...], message: str) -> None:
        """A problem with ``message`` placed at ``keys``, labelled with its ``table``."""
        self.problems.append(f"{self.place(*keys)}: {_label(*table)} {message}")

    def written(self, *keys: str) -> str | None:
        """How a one-line scalar value is spelt in the file (``0o400``), for a hint."""
        if keys not in self.places:
            return None
        if self._lines is None:
            self._lines = self.text.splitlines()
        line = self._lines[(self.places.line(*keys) or 1) - 1]
        return line.partition("=")[2].partition("#")[0].strip() or None

    def unknown_keys(
        self, table: tuple[str, ...], data: dict[str, Any], known: tuple[str, ...]
    ) -> None:
        for key in data:
            if key not in known:
                self.problem((*table, key), table, f"unknown key {key!r}{did_you_mean(key, known)}")

    def read(self, document: dict[str, Any]) -> None:
        for key in document:
            if key not in _TOP_KEYS:
                meant = closest(key, _TOP_KEYS)
                hint = f" (did you mean [{meant}]?)" if meant else ""
                self.problems.append(
                    f"{self.place(key)}: unknown table {_label(key)}{hint}; the tables are "
                    f"{', '.join(f'[{k}]' for k in _TOP_KEYS)}"
                )
        settings = self.read_defaults(self.table(document, "defaults"))
        tables = self.table(document, "secrets")
        secrets = [
            spec
            for name, body in tables.items()
            if (spec := self.read_secret(name, body, settings)) is not None
        ]
        providers: dict[str, dict[str, Any]] = {}
        for scheme, options in self.table(document, "providers").items():
            if isinstance(options, dict):
                providers[scheme] = options
            else:
                self.problem(("providers", scheme), ("providers", scheme), "must be a table")
        self.declaration.secrets = secrets
        self.declaration.rejected = set(tables) - {spec.name for spec in secrets}
        self.declaration.settings = settings
        self.declaration.provider_options = providers

    def table(self, document: dict[str, Any], key: str) -> dict[str, Any]:
        value = document.get(key, {})
        if not isinstance(value, dict):
            self.problem((key,), (key,), "must be a table")
            return {}
        return value

    def read_defaults(self, data: dict[str, Any]) -> Settings:
        table = ("defaults",)
        self.unknown_keys(table, data, _DEFAULT_KEYS)
        settings = Settings()
        for key in ("dir", "group", "user"):
            if key in data:
                if isinstance(data[key], str) and data[key]:
                    setattr(settings, key, data[key])
                else:
                    self.problem((*table, key), table, f"{key} must be a non-empty string")
        if "cleanup" in data:
            if isinstance(data["cleanup"], bool):
                settings.cleanup = data["cleanup"]
            else:
                self.problem((*table, "cleanup"), table, "cleanup must be true or false")
        if "mode" in data:
            try:
                settings.mode = parse_mode(data["mode"], "mode", self.written(*table, "mode"))
            except ValueError as err:
                self.problem((*table, "mode"), table, str(err))
        for key, parse in (
            ("timeout", parse_duration),
            ("grace", parse_duration),
            ("refresh", parse_refresh),
            ("on_change", parse_on_change),
        ):
            if key in data:
                try:
                    setattr(settings, key, parse(data[key], key))
                except ValueError as err:
                    self.problem((*table, key), table, str(err))
        return settings

    def read_secret(self, name: str, body: Any, settings: Settings) -> SecretSpec | None:
        table = ("secrets", name)
        label = _label(*table)
        source = f"{self.place(*table)} {label}"
        if not is_secret_name(name):
            self.problem(
                table,
                table,
                f"the name {name!r} is not a valid environment variable name: use "
                f"{_NAME_RULE} (the application reads NAME_FILE)",
            )
            return None
        if not isinstance(body, dict):
            self.problem(table, table, "must be a table with 'from' or 'template'")
            return None
        self.unknown_keys(table, body, _SECRET_KEYS)
        count = len(self.problems)
        ref = template = None
        if ("from" in body) == ("template" in body):
            self.problem(table, table, "needs exactly one of 'from' and 'template'")
        elif "from" in body:
            if isinstance(body["from"], str):
                try:
                    ref = parse_reference(body["from"])
                except BadReference as err:
                    self.problem((*table, "from"), table, f"from: {err}")
            else:
                self.problem((*table, "from"), table, "from must be a string")
        elif not isinstance(body["template"], str):
            self.problem((*table, "template"), table, "template must be a string")
        elif not string.Template(body["template"]).is_valid():
            self.problem(
                (*table, "template"),
                table,
                "template has a '$' that is not $$, $NAME or ${NAME}",
            )
        else:
            template = body["template"]
        export = body.get("export", "file")
        if export not in EXPORTS:
            self.problem(
                (*table, "export"),
                table,
                f"export must be one of {', '.join(EXPORTS)}, not {export!r}",
            )
        file_name = body.get("file")
        if file_name is not None and not isinstance(file_name, str):
            self.problem((*table, "file"), table, "file must be a string")
        elif file_name is not None and not is_valid_file_name(file_name):
            self.problem(
                (*table, "file"),
                table,
                f"file {file_name!r} is not one file name: use letters, digits, '.', '_' "
                "and '-', not '.' nor starting with '..'",
            )
        if file_name is None and export == "file":
            file_name = name
        mode = settings.mode
        if "mode" in body:
            try:
                mode = parse_mode(body["mode"], "mode", self.written(*table, "mode"))
            except ValueError as err:
                self.problem((*table, "mode"), table, str(err))
        optional = body.get("optional", False)
        if not isinstance(optional, bool):
            self.problem((*table, "optional"), table, "optional must be true or false")
        if len(self.problems) > count:
            return None
        ref_source = f"{self.place(*table, 'from')}: {label} from"
        return SecretSpec(
            name, source, ref, template, file_name, mode, export, optional, ref_source
        )
