"""References as Secret Manager resource names, and the endpoint that serves each.

``gcp-sm://projects/P/secrets/S[/versions/V]``, its regional form
``gcp-sm://projects/P/locations/L/secrets/S[/versions/V]``, the short
``gcp-sm://S`` (the project comes from the options, the environment or the
credentials), and berglas' ``sm://P/S[#V]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from secretinit import BadReference, SecretRef

# Secret Manager's own rules. A project is its id (6-30 lower-case letters,
# digits and hyphens, starting with a letter; "example.com:id" for a
# domain-scoped one) or its number. A secret id is 1-255 letters, digits,
# hyphens and underscores. A version is a number, "latest" or an alias.
_PROJECT = re.compile(
    r"(?:[a-z][a-z0-9.-]{0,61}[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]\Z|[0-9]{1,20}\Z"
)
_SECRET = re.compile(r"[A-Za-z0-9_-]{1,255}\Z")
_LOCATION = re.compile(r"[a-z][a-z0-9-]{0,62}\Z")
_VERSION = re.compile(r"[1-9][0-9]{0,18}\Z|latest\Z|[A-Za-z][A-Za-z0-9_-]{0,62}\Z")

PROJECT_RULE = (
    "a project id (6-30 lower-case letters, digits and hyphens, starting with a letter) "
    "or a project number"
)
FULL_FORM = "gcp-sm://projects/PROJECT/[locations/LOCATION/]secrets/SECRET[/versions/VERSION]"
DEFAULT_REGIONAL_ENDPOINT = "secretmanager.{location}.rep.googleapis.com"


@dataclass(frozen=True)
class Target:
    """What one reference reads: a secret version, in a project (None: the default one)."""

    project: str | None
    location: str | None
    secret: str
    version: str

    def name(self, default_project: str) -> str:
        """The version's resource name, ``projects/P/[locations/L/]secrets/S/versions/V``."""
        where = f"projects/{self.project or default_project}"
        if self.location is not None:
            where += f"/locations/{self.location}"
        return f"{where}/secrets/{self.secret}/versions/{self.version}"


def gcp_sm_target(ref: SecretRef) -> Target:
    """The target of a ``gcp-sm://`` reference, or :class:`BadReference` saying why not."""
    parts = ref.location.split("/")
    option = ref.option("version")
    if len(parts) == 1:
        project, location, secret, version = None, None, parts[0], None
    else:
        if parts[0] != "projects":
            raise BadReference(
                f"expected {FULL_FORM}, or gcp-sm://SECRET for a secret of the default project"
            )
        project, rest = _take(parts, 1, "PROJECT"), parts[2:]
        location = None
        if rest[:1] == ["locations"]:
            location, rest = _take(rest, 1, "LOCATION"), rest[2:]
        if rest[:1] != ["secrets"]:
            raise BadReference(f"expected {FULL_FORM}: 'secrets' is missing after the project")
        secret, rest = _take(rest, 1, "SECRET"), rest[2:]
        version = None
        if rest:
            if rest[0] != "versions" or len(rest) > 2:
                raise BadReference(f"expected {FULL_FORM}: unexpected {'/'.join(rest)!r}")
            version = _take(rest, 1, "VERSION")
        _check(_PROJECT, project, "project", PROJECT_RULE)
        if location is not None:
            _check(_LOCATION, location, "location", "a location such as us-central1")
    _check(_SECRET, secret, "secret id", "1-255 letters, digits, hyphens and underscores")
    if version is not None and option is not None:
        raise BadReference("the version is given twice: in the path and in ?version=")
    version = version or option or "latest"
    _check(_VERSION, version, "version", "a version number, 'latest' or an alias")
    return Target(project, location, secret, version)


def berglas_target(ref: SecretRef) -> Target:
    """The target of berglas' ``sm://PROJECT/SECRET[#VERSION]`` (``#`` is a version there)."""
    project, _, secret = ref.location.partition("/")
    if not secret or "/" in secret:
        raise BadReference("expected sm://PROJECT/SECRET[#VERSION], as berglas writes it")
    _check(_PROJECT, project, "project", PROJECT_RULE)
    _check(_SECRET, secret, "secret id", "1-255 letters, digits, hyphens and underscores")
    version = ref.key or "latest"
    _check(_VERSION, version, "version", "a version number, 'latest' or an alias")
    return Target(project, None, secret, version)


def regional_endpoint(template: str, location: str) -> str:
    """The API endpoint that serves ``location``'s regional secrets."""
    return template.replace("{location}", location)


def _take(parts: list[str], index: int, what: str) -> str:
    if index >= len(parts) or not parts[index]:
        raise BadReference(f"expected {FULL_FORM}: the {what} is missing")
    return parts[index]


def _check(pattern: re.Pattern[str], value: str, what: str, rule: str) -> None:
    if not pattern.match(value):
        raise BadReference(f"{what} {value!r} is not valid: {rule}")
