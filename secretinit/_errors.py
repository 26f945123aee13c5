"""The one error family of secretinit.

Every error knows the exit status it maps to and carries a message that is
safe to print: no message is ever built from a secret value. Providers raise
(or return) the fetch leaves; the core raises the rest.
"""

from __future__ import annotations

from collections.abc import Iterable

# Exit statuses of secretinit itself. The supervised command's own status is
# passed through unchanged; these only appear when secretinit stops before or
# instead of running it. Documented in the README ("Exit statuses").
EXIT_USAGE = 2  # bad option, bad config file, bad reference, unknown scheme
EXIT_FETCH = 69  # a required secret could not be fetched (sysexits EX_UNAVAILABLE)
EXIT_SOFTWARE = 70  # a bug in secretinit or in a provider (EX_SOFTWARE)
EXIT_WRITE = 73  # a secret file could not be written (EX_CANTCREAT)
EXIT_CANNOT_EXECUTE = 126  # the command exists but could not be executed
EXIT_NOT_FOUND = 127  # the command was not found


class SecretInitError(Exception):
    """Base of every error secretinit reports; the message never holds a value."""

    exit_status = EXIT_SOFTWARE


class UsageError(SecretInitError):
    """A bad command line, config file or reference: fixing the input fixes it."""

    exit_status = EXIT_USAGE


class BadReference(UsageError):
    """A secret reference that cannot be parsed or is not valid for its scheme."""


class ConfigError(UsageError):
    """A config file or provider option that is not valid.

    Several problems can be reported at once: ``problems`` holds one line per
    problem, each naming its source (file and line, secret or variable).
    """

    def __init__(self, message: str, problems: Iterable[str] = ()) -> None:
        self.problems = list(problems)
        text = message
        if self.problems:
            text += "".join(f"\n  - {p}" for p in self.problems)
        super().__init__(text)


class UnknownScheme(UsageError):
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


class SecretsUnavailable(SecretInitError):
    """One report for every required secret that could not be resolved."""

    exit_status = EXIT_FETCH

    def __init__(self, failures: Iterable[str]) -> None:
        self.failures = list(failures)
        count = len(self.failures)
        noun = "secret" if count == 1 else "secrets"
        lines = "".join(f"\n  - {f}" for f in self.failures)
        super().__init__(f"{count} required {noun} could not be resolved:{lines}")
