"""The base class every provider subclasses, and the helpers they share."""

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
