"""The ``env-file`` provider: ``env-file://PATH#KEY`` reads KEY from a .env file.

The file is parsed by python-dotenv's parser, the one every ``.env`` user
already knows, without variable interpolation: a secret is the literal text of
its line, so a value such as ``pa${x}ss`` is never rewritten from the
environment. A relative PATH is relative to the working directory.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

from dotenv.parser import parse_stream

from secretinit._errors import AccessDenied, FetchError, NotFound
from secretinit._provider import FetchResult, Provider
from secretinit._reference import SecretRef


class EnvFile:
    """The variables of one parsed .env file, and the lines that did not parse."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.values: dict[str, str | None] = {}
        self.bad_lines: list[int] = []
        for binding in parse_stream(io.StringIO(text)):
            if binding.error:
                self.bad_lines.append(binding.original.line)
            elif binding.key is not None:
                self.values[binding.key] = binding.value

    def lookup(self, key: str) -> bytes:
        """The bytes of ``key``, or :class:`NotFound` saying why there are none."""
        if key not in self.values:
            hint = ""
            if self.bad_lines:
                lines = ", ".join(str(n) for n in self.bad_lines[:10])
                hint = f" (lines that could not be parsed: {lines})"
            raise NotFound(f"{key} is not set in {self.path}{hint}")
        value = self.values[key]
        if value is None:
            raise NotFound(f"{key} has no value in {self.path} (the line has no '=')")
        return value.encode("utf-8")


def read_env_file(path: str) -> EnvFile:
    """Read and parse ``path``; errors name the file (resolved) and the cause, never content."""
    path = os.path.abspath(path)  # a relative path is relative to the working directory
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise NotFound(f"env file {path} does not exist") from None
    except PermissionError:
        raise AccessDenied(f"env file {path} is not readable: permission denied") from None
    except IsADirectoryError:
        raise FetchError(f"env file {path} is a directory, not a file") from None
    except OSError as err:
        raise FetchError(f"env file {path} could not be read: {err.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise FetchError(f"env file {path} is not UTF-8 text (line {line})") from None
    return EnvFile(path, text)


class EnvFileProvider(Provider):
    """Secrets from .env files; each file is read and parsed once per batch."""

    key_required = True

    def fetch(self, refs: Sequence[SecretRef], timeout: float) -> FetchResult:
        files: dict[str, EnvFile | FetchError] = {}
        results: dict[SecretRef, bytes | FetchError] = {}
        for ref in refs:
            if ref.location not in files:
                try:
                    files[ref.location] = read_env_file(ref.location)
                except FetchError as err:
                    files[ref.location] = err
            env_file = files[ref.location]
            if isinstance(env_file, FetchError):
                results[ref] = env_file
                continue
            assert ref.key is not None  # check_reference requires it
            try:
                results[ref] = env_file.lookup(ref.key)
            except NotFound as err:
                results[ref] = err
        return results
