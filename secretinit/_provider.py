"""The base class every provider subclasses, and the helpers they share."""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from secretinit._errors import BadReference, ConfigError, FetchError, NotFound
from secretinit._reference import SecretRef

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
        unknown = sorted(set(self.options) - self.config_options)
        if unknown:
            raise ConfigError(
                f"[providers.{self.table}] has unknown options",
                [self.unknown_option(name) for name in unknown],
            )

    def __repr__(self) -> str:
        # Never echo options: a table may hold a credential.
        return f"<{type(self).__name__} scheme={self.scheme!r}>"

    def unknown_option(self, name: str) -> str:
        """The problem line for option ``name`` of the table, which is not an option.

        Like every option problem, it starts ``[providers.TABLE] NAME:`` so that
        the core can point at the key's line in the config file.
        """
        close = close_matches(name, self.config_options)
        hint = (
            f"did you mean {' or '.join(repr(option) for option in close)}?"
            if close
            else f"accepted: {', '.join(sorted(self.config_options)) or 'none'}"
        )
        return f"[providers.{self.table}] {name}: not an option of {self.table} ({hint})"

    def check_reference(self, ref: SecretRef) -> None:
        """Raise :class:`BadReference` if ``ref`` is not valid for this provider.

        Called for every reference before anything is fetched. Subclasses that
        extend it call ``super().check_reference(ref)`` first.
        """
        for name, _value in ref.options:
            if name not in self.reference_options:
                accepted = ", ".join(sorted(self.reference_options)) or "none"
                raise BadReference(
                    f"{self.scheme} does not accept option {name!r} (accepted: {accepted})"
                )
        if self.key_required and ref.key is None:
            raise BadReference(f"a {self.scheme} reference needs #KEY")

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
            raise ConfigError(f"[providers.{self.table}] {name}: must be a string")
        return value

    def option_bool(self, name: str, default: bool) -> bool:
        """Option ``name`` as a boolean, or ``default``."""
        value = self.options.get(name, default)
        if not isinstance(value, bool):
            raise ConfigError(f"[providers.{self.table}] {name}: must be true or false")
        return value

    def option_number(self, name: str, default: float) -> float:
        """Option ``name`` as a positive number, or ``default``."""
        value = self.options.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"[providers.{self.table}] {name}: must be a positive number")
        return float(value)


def close_matches(word: str, choices: Iterable[str]) -> list[str]:
    """The one or two of ``choices`` closest to a misspelt ``word``, best first."""
    import difflib  # only on a mistake: it costs start-up time

    scored = sorted(
        ((difflib.SequenceMatcher(None, word, choice).ratio(), choice) for choice in choices),
        reverse=True,
    )
    best = scored[0][0] if scored else 0.0
    # Two when they are about as close ("role_id_path": role_id, role_id_file).
    return [choice for ratio, choice in scored[:2] if ratio >= max(0.6, best - 0.1)]


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
