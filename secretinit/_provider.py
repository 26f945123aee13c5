"""The base class every provider subclasses, and the helpers they share.

Refresh (``--refresh``): how a provider lives across runs
---------------------------------------------------------

With ``--refresh`` the secrets are fetched by a series of short-lived runs:
the start, then one run each period, started by the lean supervisor (which
holds no SDK between them). A provider object lives for one run only; what
it must keep from one run to the next goes through four members, all
optional:

- :attr:`Provider.refreshing` is True in every run of a series, the start
  included. The provider must then not revoke what the next run needs (a
  login token that leases depend on, or that a wrapped secret id can never
  give again), and should keep such things in its state instead.
- :meth:`Provider.save_state` is called at the end of every run of a series,
  after a failure too (a login may have consumed a single-use secret id
  before a later read failed), before :meth:`Provider.close`. It returns a
  JSON-serialisable mapping; the core keeps it in the secret directory's
  private state directory (``..secretinit/``, mode 0700, files 0600, on the
  same tmpfs as the secrets), never in argv, the application's environment
  or a log.
- :meth:`Provider.restore_state` gets that mapping back at the beginning of
  the next run, before the first :meth:`Provider.fetch`.
- :meth:`Provider.refresh_within` says, after a fetch, how soon the next run
  must come at the latest (a lease to renew at about 2/3 of its TTL, with
  jitter): the supervisor then runs the next refresh sooner than the period.

Every run fetches every reference, as the start did: the core compares the
values with the files by content and writes a new generation of files only
when something changed. A provider that holds leases therefore answers a
refresh with the value it fetched before for as long as the lease is renewed
(kept in its state), and fetches anew only when the lease cannot be renewed
or reaches its max TTL: the new value then reaches the files, and
``--on-change`` tells the application. When a value the application holds
has run out and no new one can be had, the provider returns
:class:`~secretinit.Expired` for it: the last good files stay, and with
``--on-change exit`` the container is restarted with a distinct status.

:meth:`Provider.abandon` keeps its meaning in a refresh: the run failed, so
what it fetched *anew* is never written and may be released, while what the
files already hold (a lease renewed in this run) must stay.

When the series ends because the command exited (``run --refresh``), the
supervisor starts one last short run that calls :meth:`Provider.release`
after :meth:`Provider.restore_state`: the provider ends what its state holds
(a login token, leases), since nothing uses it any more. A sidecar's series
(``fetch --refresh``) has no such run: the application in another container
may still hold the credentials while it drains, so what the state holds
ends with its TTL.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from secretinit._errors import BadReference, ConfigError, FetchError, NotFound
from secretinit._reference import SecretRef
from secretinit._suggest import closest

FetchResult = Mapping[SecretRef, "bytes | FetchError"]


class Provider(abc.ABC):
    """One secret store, built once per run from its options.

    A subclass implements :meth:`fetch`: given every reference of its scheme at
    once, it returns the bytes of each or a :class:`FetchError` for each one
    that failed. Batching and de-duplication are its business; the core runs
    providers concurrently and owns retries (of ``transient`` errors), the
    deadline and the report.

    Subclasses declare what they accept so that the core can reject a bad
    reference or option before anything is fetched.
    """

    #: Names accepted in ``?OPTION=VALUE`` of this provider's references.
    reference_options: ClassVar[frozenset[str]] = frozenset()
    #: Keys accepted in this provider's ``[providers.SCHEME]`` table.
    config_options: ClassVar[frozenset[str]] = frozenset()
    #: The ``[providers.NAME]`` table read for this provider; its scheme when
    #: None. Schemes of one store share a table (``aws-sm``, ``aws-ssm``: ``aws``).
    config_table: ClassVar[str | None] = None
    #: Whether a reference must carry ``#KEY`` (``env-file`` picks a variable).
    key_required: ClassVar[bool] = False
    #: Variables holding this provider's own credentials (``VAULT_TOKEN``): the
    #: core removes them from the application's environment.
    credential_variables: ClassVar[frozenset[str]] = frozenset()
    #: True when the run is ``secretinit check``, set by the core before
    #: :meth:`fetch`. A check must never consume what the real start needs:
    #: a provider whose login is single-use (a wrapped secret id) checks what
    #: it can without using it and returns :class:`NotChecked` for the rest.
    checking: bool = False
    #: True when this run is one of a series that keeps the files current
    #: (``--refresh``), the start included; set by the core before
    #: :meth:`restore_state`. See the module docstring.
    refreshing: bool = False

    def __init__(
        self,
        scheme: str,
        options: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        import os

        self.scheme = scheme
        self.table = self.config_table or scheme
        self.options: dict[str, Any] = dict(options or {})
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        unknown = unknown_options(type(self), self.table, self.options)
        if unknown:
            raise ConfigError(f"[providers.{self.table}] has unknown options", unknown)

    def __repr__(self) -> str:
        # Never echo options: a table may hold a credential.
        return f"<{type(self).__name__} scheme={self.scheme!r}>"

    def check_reference(self, ref: SecretRef) -> None:
        """Raise :class:`BadReference` if ``ref`` is not valid for this provider.

        Called for every reference before anything is fetched. Subclasses that
        extend it call ``super().check_reference(ref)`` first.
        """
        problem = reference_problem(type(self), ref)
        if problem:
            raise BadReference(problem)

    @abc.abstractmethod
    def fetch(self, refs: Sequence[SecretRef], timeout: float) -> FetchResult:
        """Fetch ``refs`` (distinct, already checked) within ``timeout`` seconds.

        Return a mapping with one entry per reference: its bytes, or a
        :class:`FetchError` saying what failed. Raising is reserved for
        failures that concern the whole batch; the core then reports every
        reference of the batch with that error.
        """

    def abandon(self) -> None:
        """The start failed after this provider fetched: release what it fetched.

        Called before :meth:`close` when a run stops without starting the
        application (another secret failed, a file could not be written), so
        a provider holding dynamic credentials can revoke them.
        """

    def close(self) -> None:
        """Release connections; called once when the run no longer needs them."""

    # The refresh hooks (see the module docstring): a provider that keeps
    # nothing between runs leaves them as they are.

    def restore_state(self, state: Mapping[str, Any]) -> None:
        """Take back what :meth:`save_state` returned at the end of the previous run.

        Called once, before the first :meth:`fetch`, in every run of a
        refresh series but the first; ``state`` is empty when there is none.
        """

    def save_state(self) -> Mapping[str, Any]:
        """What the next run of the series needs (a token, lease ids): JSON-serialisable.

        Called at the end of every run of a refresh series, on success or
        failure, before :meth:`close`. The mapping stays in the secret
        directory's private state directory until the next run.
        """
        return {}

    def release(self) -> None:
        """The series ended for good: end what the state holds (a login token, leases).

        Called once, in a last short run that the supervisor starts after the
        command of ``run --refresh`` exited, after :meth:`restore_state` and
        before :meth:`close`. Whatever it cannot end expires with its TTL.
        """

    def refresh_within(self) -> float | None:
        """Seconds within which the next refresh must come at the latest, or None.

        Asked at the end of every run of a refresh series: a lease to renew
        before it expires makes the next run come sooner than the period.
        """
        return None

    # Helpers for reading the [providers.SCHEME] table with clear errors.

    def option_str(self, name: str, default: str | None = None) -> str | None:
        """Option ``name`` as a string, or ``default``."""
        value = self.options.get(name, default)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"[providers.{self.table}] {name} must be a string")
        return value

    def option_bool(self, name: str, default: bool) -> bool:
        """Option ``name`` as a boolean, or ``default``."""
        value = self.options.get(name, default)
        if not isinstance(value, bool):
            raise ConfigError(f"[providers.{self.table}] {name} must be true or false")
        return value

    def option_number(self, name: str, default: float) -> float:
        """Option ``name`` as a positive number, or ``default``."""
        value = self.options.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"[providers.{self.table}] {name} must be a positive number")
        return float(value)

    def option_count(self, name: str, default: int) -> int:
        """Option ``name`` as a positive whole number (a concurrency), or ``default``."""
        value = self.option_number(name, default)
        if value != int(value):
            raise ConfigError(f"[providers.{self.table}] {name} must be a whole number")
        return int(value)


def unknown_options(cls: type[Provider], table: str, options: Mapping[str, Any]) -> list[str]:
    """One problem per key of ``[providers.table]`` that ``cls`` does not read.

    Each names the table and the key first, so the core can place it at the
    key's line in the config file.
    """
    unknown = sorted(set(options) - cls.config_options)
    if not unknown:
        return []
    known = sorted(cls.config_options)
    accepted = ", ".join(known) or "none"
    problems = []
    for name in unknown:
        meant = closest(name, known)
        hint = f"did you mean {meant!r}? " if meant else ""
        problems.append(
            f"[providers.{table}] {name!r} is not an option of {table} ({hint}accepted: {accepted})"
        )
    return problems


def reference_problem(cls: type[Provider], ref: SecretRef) -> str | None:
    """What is wrong with ``ref``'s option names or missing ``#KEY`` for ``cls``, if anything.

    Needs no provider instance, so a reference can be checked against its
    provider's class without logging in anywhere (as ``--env-file`` does).
    """
    for name, _value in ref.options:
        if name not in cls.reference_options:
            known = sorted(cls.reference_options)
            meant = closest(name, known)
            hint = f"did you mean {meant!r}? " if meant else ""
            return (
                f"{ref.scheme} does not accept option {name!r} "
                f"({hint}accepted: {', '.join(known) or 'none'})"
            )
    if cls.key_required and ref.key is None:
        return f"a {ref.scheme} reference needs #KEY"
    return None


def select_key(document: bytes | Mapping[str, Any], key: str, what: str) -> bytes:
    """The bytes of field ``key`` of a JSON object (or an already decoded map).

    ``what`` names the document in errors ("secret app/db"). A string field is
    returned as UTF-8, any other JSON value as compact JSON. Errors name keys,
    never values.
    """
    import json  # only a #KEY needs it: it costs start-up time

    if isinstance(document, bytes | bytearray):
        try:
            data = json.loads(document)
        except ValueError:
            raise NotFound(f"{what} is not a JSON object, so it has no key {key!r}") from None
        if not isinstance(data, dict):
            raise NotFound(f"{what} is JSON but not an object, so it has no key {key!r}")
    else:
        data = document  # not copied: one map may serve a thousand keys
    if key not in data:
        keys = sorted(str(k) for k in data)
        shown = ", ".join(keys[:20]) + (", ..." if len(keys) > 20 else "")
        raise NotFound(f"{what} has no key {key!r} (keys: {shown or 'none'})")
    return encode_value(data[key])


def encode_value(value: Any) -> bytes:
    """A field's bytes: strings as UTF-8, anything else as compact JSON."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes):
        return value
    import json

    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
