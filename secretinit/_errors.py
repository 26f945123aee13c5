"""The one error family of secretinit.

Every error knows the exit status it maps to and carries a message that is
safe to print: no message is ever built from a secret value. Providers raise
(or return) the fetch leaves; the core raises the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Iterable

# Exit statuses of secretinit itself. The supervised command's own status is
# passed through unchanged; these only appear when secretinit stops before or
# instead of running it. Documented in the README ("Exit statuses") and in
# each command's --help; a test keeps the three in step.
EXIT_USAGE = 2  # a bad command line: an option, its value, a missing --env-file
EXIT_FETCH = 69  # a required secret could not be fetched (sysexits EX_UNAVAILABLE)
EXIT_SOFTWARE = 70  # a bug in secretinit or in a provider (EX_SOFTWARE)
EXIT_WRITE = 73  # a secret file could not be written (EX_CANTCREAT)
# With --refresh: the supervisor stopped the command because its secrets
# changed (--on-change exit), so that the orchestrator starts it again.
EXIT_CHANGED = 75  # EX_TEMPFAIL: start again and it works
# With --refresh: a credential the command holds has expired and cannot be
# replaced (--on-change exit), so only a fresh start can get a new one.
EXIT_EXPIRED = 77  # EX_NOPERM
EXIT_CONFIG = 78  # a bad declaration: config file, reference, scheme, provider option (EX_CONFIG)
EXIT_CANNOT_EXECUTE = 126  # the command exists but could not be executed
EXIT_NOT_FOUND = 127  # the command was not found


def unreadable(path: str, error: OSError) -> str:
    """Why ``path`` could not be read, in words: ``PATH does not exist``, ..."""
    if isinstance(error, FileNotFoundError):
        return f"{path} does not exist"
    if isinstance(error, IsADirectoryError):
        return f"{path} is a directory"
    if isinstance(error, PermissionError):
        return f"{path} is not readable: permission denied"
    return f"{path} could not be read: {error.strerror or type(error).__name__}"


class SecretInitError(Exception):
    """Base of every error secretinit reports; the message never holds a value."""

    exit_status = EXIT_SOFTWARE


class UsageError(SecretInitError):
    """Input that the user fixes: a bad command line (status 2).

    Its subclass :class:`ConfigError` is the declaration's part (status 78),
    so that a deployment script can tell a wrong flag from a wrong config.
    """

    exit_status = EXIT_USAGE


class ConfigError(UsageError):
    """A config file, secret reference or provider option that is not valid.

    Several problems can be reported at once: ``problems`` holds one line per
    problem, each naming its source (file and line, secret or variable). A
    provider that names the key at fault as ``[providers.NAME] key ...`` has
    its problem placed at that key's line in the config file.
    """

    exit_status = EXIT_CONFIG

    def __init__(self, message: str, problems: Iterable[str] = ()) -> None:
        self.problems = list(problems)
        text = message
        if self.problems:
            text += "".join(f"\n  - {p}" for p in self.problems)
        super().__init__(text)


class BadReference(ConfigError):
    """A secret reference that cannot be parsed or is not valid for its scheme."""


class UnknownScheme(ConfigError):
    """A reference names a scheme no installed provider handles."""


class FetchError(SecretInitError):
    """A secret could not be fetched.

    ``transient`` errors (refused connection, timeout, throttling, 5xx, a sealed
    vault) are retried by the core until the deadline; the others fail at once.
    """

    exit_status = EXIT_FETCH
    transient = False
    kind = "fetch failed"


class NotFound(FetchError):
    """The secret, the path or the key does not exist."""

    kind = "not found"


class AccessDenied(FetchError):
    """The store refused: a policy, a permission or a rejected credential."""

    kind = "access denied"


class Unreachable(FetchError):
    """The store could not be reached or answered with a transient failure."""

    transient = True
    kind = "unreachable"


class Throttled(Unreachable):
    """The store refused for now because of its rate limit (a 429, ``ThrottlingException``).

    ``retry_after`` is the wait in seconds the store asked for (its
    ``Retry-After``), or None when it named none: the core then backs off on
    its own, and never retries sooner than a wait the store asked for.
    """

    kind = "throttled"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    @staticmethod
    def parse_retry_after(header: str | None) -> float | None:
        """Seconds from an HTTP ``Retry-After`` (delta-seconds or an HTTP date), else None."""
        if header is None or not header.strip():
            return None
        text = header.strip()
        if text.isascii() and text.isdigit():
            return float(text)
        import email.utils  # a date is rare: only then pay for the import
        import time

        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


class Expired(FetchError):
    """A value the application holds has expired and cannot be replaced.

    A provider returns it in a refresh (``--refresh``) when what it fetched
    earlier (a Vault lease, a login token) has run out and no new one can be
    had: the login cannot be renewed or repeated (a response-wrapped or
    single-use secret id), or the store refuses. The last good files stay;
    with ``--on-change exit`` the supervisor stops the command and exits
    with :data:`EXIT_EXPIRED`, so that a fresh start can get a new one.
    """

    kind = "expired"


class NotChecked(FetchError):
    """``secretinit check`` did not try this secret, on purpose.

    A provider returns it when trying would consume what the real start
    needs (a response-wrapped or single-use credential): the message says what
    was checked instead and what was not tried. ``check`` reports it without
    failing; a real start never sees it.
    """

    kind = "not checked"


class WriteFailed(SecretInitError):
    """A secret file or the secret directory could not be written."""

    exit_status = EXIT_WRITE


def shorten(text: str, limit: int) -> str:
    """``text`` as one line of at most ``limit`` characters (cut with "..."), for a reason."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Failure(NamedTuple):
    """One secret that could not be resolved: which, from where, what kind and why.

    ``reference`` is the declared reference (with the one it was resolved
    through under ``--env-file``), or None for a template.
    """

    name: str
    reference: str | None
    source: str
    kind: str
    reason: str

    def line(self) -> str:
        """``NAME (reference, source): kind: reason``, the report's line for one secret."""
        return f"{self.name} ({self.reference or 'template'}, {self.source}): {self.cause}"

    @property
    def cause(self) -> str:
        """``kind: reason``: what failures of one cause share."""
        return f"{self.kind}: {self.reason}"

    def fields(self) -> dict[str, Any]:
        """The failure as a JSON record's fields."""
        return self._asdict()


def group_by_cause(failures: Iterable[Failure]) -> dict[str, list[Failure]]:
    """Failures by their cause, in the order each cause first appears."""
    groups: dict[str, list[Failure]] = {}
    for failure in failures:
        groups.setdefault(failure.cause, []).append(failure)
    return groups


class SecretsUnavailable(SecretInitError):
    """One report for every required secret that could not be resolved.

    Secrets that failed for the same cause (a server down, a missing login
    file) share one line that names them all, instead of one line each.
    """

    exit_status = EXIT_FETCH

    def __init__(self, failures: Iterable[Failure], listed: bool = True) -> None:
        """``listed=False``: the reasons were printed already (``check``); name the secrets only."""
        self.failures = list(failures)
        count = len(self.failures)
        noun = "secret" if count == 1 else "secrets"
        if not listed:
            names = ", ".join(f.name for f in self.failures)
            super().__init__(f"{count} required {noun} would not resolve (see above): {names}")
            return
        lines = []
        for cause, group in group_by_cause(self.failures).items():
            if len(group) == 1:
                lines.append(group[0].line())
            else:
                names = ", ".join(f.name for f in group)
                lines.append(f"{len(group)} secrets ({names}): {cause}")
        text = "".join(f"\n  - {line}" for line in lines)
        super().__init__(f"{count} required {noun} could not be resolved:{text}")

    def fields(self) -> dict[str, Any]:
        """The JSON record's fields: each failure, and the causes with the names they hit."""
        return {
            "failures": [f.fields() for f in self.failures],
            "causes": [
                {
                    "kind": group[0].kind,
                    "reason": group[0].reason,
                    "secrets": [f.name for f in group],
                }
                for group in group_by_cause(self.failures).values()
            ],
        }
