"""Where each table and key of a TOML document is written: one pass, for error messages.

``tomllib`` parses without positions, and a problem in a config should name
the line of the key at fault. Searching the text again for every problem made
a config of a thousand secrets take a second to check; this reads it once,
after ``tomllib`` has accepted it, into a table of dotted paths (``("secrets",
"DB", "mode")``) and the line each is first written on.

Most lines of a config are simple (a header, ``key = "string"``, a number, a
comment): one regular expression takes each in C. Any other statement (a
quoted or dotted key, an array or inline table, a multi-line string, which may
hold text that looks like a header) is followed token by token until it ends.
It is only ever given a document that ``tomllib`` parsed, and should it still
meet something it does not expect, it keeps what it found so far: a place is a
help, never a reason to fail.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

Path = tuple[str, ...]

# Imported only to read a config file, so these are compiled only then.
# A whole simple line, up to (not including) its newline.
_SIMPLE = re.compile(
    r"""[ \t]*
    (?:
        \[[ \t]*(?P<header>[A-Za-z0-9_-]+(?:[ \t]*\.[ \t]*[A-Za-z0-9_-]+)*)[ \t]*\]
      | (?P<key>[A-Za-z0-9_-]+)[ \t]*=[ \t]*
        (?: "(?:[^"\\\n]|\\.)*"(?!")
          | '[^'\n]*'(?!')
          | [A-Za-z0-9_+\-:.]+(?:[ T][0-9:.+\-Z]+)?
        )
    )?
    [ \t]*(?:\#[^\n]*)?\r?(?=\n|\Z)""",
    re.VERBOSE,
)
# One token of any other statement; blanks and comments match without a group.
_TOKEN = re.compile(
    r"""
      (?P<nl>\n)
    | [ \t\r]+
    | \#[^\n]*
    | (?P<str>"{3}(?:[^"\\]|\\.|"(?!""))*"{3,5}
             |'{3}(?:[^']|'(?!''))*'{3,5}
             |"(?:[^"\\\n]|\\.)*"
             |'[^'\n]*')
    | (?P<punct>[\[\]{}=,.])
    | (?P<word>[^\s\[\]{}=,.\#"']+)
    """,
    re.VERBOSE | re.DOTALL,
)
_ESCAPE = re.compile(r"\\(u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|.)")
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", "e": "\x1b"}


class TomlPlaces:
    """The line of every table header and key of a TOML text, by dotted path."""

    def __init__(self, text: str) -> None:
        self._lines: dict[Path, int] = {}
        try:
            self._document(text)
        except (IndexError, ValueError, StopIteration):
            pass  # keep the places found so far (see the module docstring)

    def line(self, *path: str) -> int | None:
        """The line of ``path``, else of its nearest written parent; None if none is."""
        while path:
            found = self._lines.get(path)
            if found is not None:
                return found
            path = path[:-1]
        return None

    def __contains__(self, path: Path) -> bool:
        return path in self._lines

    def _record(self, path: Path, line: int) -> None:
        for end in range(1, len(path) + 1):
            # A parent first written as part of a dotted key is placed there,
            # unless a header or key of its own came earlier.
            self._lines.setdefault(path[:end], line)

    def _header(self, table: Path, line: int) -> None:
        self._lines[table] = line  # a header is its table's place
        self._record(table, line)

    def _document(self, text: str) -> None:
        table: Path = ()
        pos, line = 0, 1
        while pos < len(text):
            simple = _SIMPLE.match(text, pos)
            if simple is not None:
                header, key = simple.group("header", "key")
                if header is not None:
                    table = tuple(part.strip() for part in header.split("."))
                    self._header(table, line)
                elif key is not None:
                    self._record((*table, key), line)
                pos, line = simple.end() + 1, line + 1
                continue
            tokens = _Tokens(text, pos, line)
            table = self._statement(tokens, table)
            pos, line = tokens.position, tokens.line

    def _statement(self, tokens: _Tokens, table: Path) -> Path:
        """Follow one statement through the newline that ends it; return the table after it."""
        kind, text, line = tokens.next()
        if kind == "punct" and text == "[":
            double = tokens.peek()[1] == "["
            if double:
                tokens.next()
            table = self._key(tokens)
            tokens.next()  # ]
            if double:
                tokens.next()  # ]
            self._header(table, line)
        elif kind != "nl":
            key = (*table, *self._key(tokens, (kind, text, line)))
            self._record(key, line)
            tokens.next()  # =
            self._value(tokens, key)
        while kind != "nl" and kind != "end":
            kind = tokens.next()[0]
        return table

    def _key(self, tokens: _Tokens, first: tuple[str, str, int] | None = None) -> Path:
        """A dotted key (``a."b c".d``) as its parts."""
        parts = []
        kind, text, _line = first or tokens.next()
        while True:
            if kind == "word":
                parts.append(text)
            elif kind == "str" and text[0] == '"':
                parts.append(_ESCAPE.sub(_unescape, text[1:-1]))
            elif kind == "str":
                parts.append(text[1:-1])
            else:
                raise ValueError("not a key")
            if tokens.peek()[1] != ".":
                return tuple(parts)
            tokens.next()
            kind, text, _line = tokens.next()

    def _value(self, tokens: _Tokens, path: Path | None) -> None:
        """Skip one value; record the keys of an inline table under ``path``."""
        kind, text, _line = tokens.next()
        if kind == "punct" and text == "[":
            while True:
                while tokens.peek()[0] == "nl":
                    tokens.next()
                if tokens.peek()[1] == "]":
                    tokens.next()
                    return
                self._value(tokens, None)
                while tokens.peek()[0] == "nl":
                    tokens.next()
                if tokens.peek()[1] == ",":
                    tokens.next()
        elif kind == "punct" and text == "{":
            while True:
                kind, text, line = tokens.next()
                if text == "}":
                    return
                if text == ",":
                    continue
                key = self._key(tokens, (kind, text, line))
                inner = (*path, *key) if path is not None else None
                if inner is not None:
                    self._record(inner, line)
                tokens.next()  # =
                self._value(tokens, inner)
        elif kind == "word":
            # A number, boolean or date: words and the dots of a float, up to
            # what ends the value (a newline, a comma, the enclosing bracket).
            while tokens.peek()[0] == "word" or tokens.peek()[1] == ".":
                tokens.next()
        elif kind != "str":
            raise ValueError("not a value")


class _Tokens:
    """The significant tokens from a position on, with their lines and one token of lookahead."""

    def __init__(self, text: str, pos: int, line: int) -> None:
        self._matches: Iterator[re.Match[str]] = _TOKEN.finditer(text, pos)
        self._ahead: tuple[str, str, int] | None = None
        self.position = len(text)  # where the text after the last token taken starts
        self._ahead_end = len(text)
        self.line = line

    def peek(self) -> tuple[str, str, int]:
        if self._ahead is None:
            for match in self._matches:
                if match.lastgroup is not None:
                    break  # blanks and comments have no group
            else:
                self._ahead, self._ahead_end = ("end", "", self.line), self.position
                return self._ahead
            kind, value = match.lastgroup, match.group()
            self._ahead, self._ahead_end = (kind, value, self.line), match.end()
            self.line += 1 if kind == "nl" else value.count("\n") if kind == "str" else 0
        return self._ahead

    def next(self) -> tuple[str, str, int]:
        token = self.peek()
        self._ahead = None
        self.position = self._ahead_end
        return token


def _unescape(match: re.Match[str]) -> str:
    code = match.group(1)
    if code[0] in "uU":
        return chr(int(code[1:], 16))
    return _ESCAPES.get(code, code)
