"""Suggestions for a mistyped word: the closest known one ("did you mean ...?")."""

from __future__ import annotations

from collections.abc import Iterable


def closest(word: str, candidates: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The candidate most like ``word``, if one is alike enough (difflib's ratio)."""
    import difflib  # only on an error path: it costs start-up time

    found = difflib.get_close_matches(word, list(candidates), n=1, cutoff=cutoff)
    return found[0] if found else None


def did_you_mean(word: str, candidates: Iterable[str], quote: bool = True) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or nothing."""
    meant = closest(word, candidates)
    if meant is None:
        return ""
    return f" (did you mean {meant!r}?)" if quote else f" (did you mean {meant}?)"
