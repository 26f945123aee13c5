"""Secret references: ``SCHEME://LOCATION[#KEY][?OPTION=VALUE&...]``.

A reference says where a secret lives, never what it is, so it may appear in
reports and logs. ``#KEY`` and ``?OPTIONS`` may come in either order (the
design writes the key first, URLs write the query first; both are accepted).
``%XX`` escapes a character that would otherwise end a part (``#``, ``?``,
``&``, ``=``, ``%``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from secretinit._errors import BadReference

SCHEME_PATTERN = re.compile(r"([a-z][a-z0-9+.-]*)://")
_OPTION_NAME = re.compile(r"[a-z][a-z0-9_-]*\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ESCAPES = re.compile(r"(?:%[0-9A-Fa-f]{2})+")

SYNTAX = "SCHEME://LOCATION[#KEY][?OPTION=VALUE&...]"


@dataclass(frozen=True)
class SecretRef:
    """A parsed reference: which provider, where, which key, which options."""

    scheme: str
    location: str
    key: str | None = None
    options: tuple[tuple[str, str], ...] = ()

    def option(self, name: str, default: str | None = None) -> str | None:
        """The value of option ``name``, or ``default`` when it is not given."""
        for option_name, value in self.options:
            if option_name == name:
                return value
        return default

    def without_key(self) -> SecretRef:
        """The same reference with no ``#KEY``: what a store reads once per path."""
        return SecretRef(self.scheme, self.location, None, self.options)

    def __str__(self) -> str:
        text = f"{self.scheme}://{_escape(self.location, '%#?')}"
        if self.key is not None:
            text += "#" + _escape(self.key, "%#?")
        if self.options:
            text += "?" + "&".join(
                f"{name}={_escape(value, '%#?&=')}" for name, value in self.options
            )
        return text


def _escape(text: str, special: str) -> str:
    if not any(c in text for c in special):
        return text  # the usual case: a report of a thousand secrets prints each
    return "".join(f"%{ord(c):02X}" if c in special else c for c in text)


def _unescape(part: str, what: str) -> str:
    # urllib.parse.unquote, without the cost of importing urllib.parse
    # (and ipaddress) at every start: each run of %XX is UTF-8.
    def decode(run: re.Match[str]) -> str:
        return bytes.fromhex(run.group(0).replace("%", "")).decode("utf-8")

    if "%" not in part:
        return part  # the usual case, without a regex
    try:
        return _ESCAPES.sub(decode, part)
    except UnicodeDecodeError:
        raise BadReference(f"the {what} has a %-escape that is not UTF-8") from None


def reference_scheme(value: str) -> str | None:
    """The scheme ``value`` starts with (``vault`` in ``vault://...``), if any."""
    match = SCHEME_PATTERN.match(value)
    return match.group(1) if match else None


def written_scheme(value: str) -> tuple[str, str] | None:
    """``(scheme, separator)`` of a value shaped like a mistyped reference, if it is one.

    Looser than a reference: any case, ``_`` allowed, one to three slashes
    (``Vault://``, ``aws_sm://``, ``vault:/x``), so that a near miss of a
    known scheme can be refused instead of passed to the application as its
    value. A value with no ``:/`` costs one substring test.
    """
    colon = value.find(":/")
    if colon <= 0:
        return None
    scheme = value[:colon]
    # By hand, not by a regex: nearly every start has a PATH holding ":/",
    # and compiling a pattern would cost more than this loop.
    if not (scheme.isascii() and scheme[0].isalpha()):
        return None
    if not all(c.isalnum() or c in "+._-" for c in scheme):
        return None
    end = colon + 1
    while end < len(value) and end < colon + 4 and value[end] == "/":
        end += 1
    return scheme, value[colon:end]


def parse_reference(text: str) -> SecretRef:
    """Parse ``text`` into a :class:`SecretRef` or raise :class:`BadReference`.

    The message of the error says what is wrong with the reference; the caller
    adds which secret it belongs to.
    """
    match = SCHEME_PATTERN.match(text)
    if match is None:
        raise BadReference(f"not a reference: expected {SYNTAX}")
    if _CONTROL.search(text):
        raise BadReference("a reference may not contain control characters")
    if text != text.strip():
        raise BadReference("a reference may not start or end with whitespace")
    scheme = match.group(1)
    rest = text[match.end() :]

    end = len(rest)
    for separator in "#?":
        position = rest.find(separator)
        if position != -1:
            end = min(end, position)
    location = _unescape(rest[:end], "location")
    if not location:
        raise BadReference(f"the location is empty: expected {SYNTAX}")
    rest = rest[end:]

    key: str | None = None
    query: str | None = None
    while rest:
        marker, rest = rest[0], rest[1:]
        # Either part ends where the next one starts; a raw '#' or '?' inside
        # one is refused, since it is ambiguous (%23 and %3F escape them).
        stop = min((p for p in (rest.find("#"), rest.find("?")) if p != -1), default=-1)
        part, rest = (rest, "") if stop == -1 else (rest[:stop], rest[stop:])
        if marker == "#":
            if key is not None:
                raise BadReference("a reference has at most one #KEY")
            if not part:
                raise BadReference("the #KEY is empty")
            key = _unescape(part, "key")
        else:
            if query is not None:
                raise BadReference("a reference has at most one ?OPTIONS part")
            query = part
    options = _parse_options(query) if query is not None else ()
    return SecretRef(scheme, location, key, options)


def _parse_options(query: str) -> tuple[tuple[str, str], ...]:
    if not query:
        raise BadReference("the ?OPTIONS part is empty")
    options: list[tuple[str, str]] = []
    seen: set[str] = set()
    for item in query.split("&"):
        name, equals, value = item.partition("=")
        if not equals:
            raise BadReference(f"option {name!r} has no value: write {name}=VALUE")
        if not _OPTION_NAME.match(name):
            raise BadReference(
                f"option name {name!r} is not valid: lower-case letters, digits, - and _"
            )
        if name in seen:
            raise BadReference(f"option {name!r} is given twice")
        if not value:
            raise BadReference(f"option {name!r} has an empty value")
        seen.add(name)
        options.append((name, _unescape(value, f"value of option {name!r}")))
    return tuple(options)
