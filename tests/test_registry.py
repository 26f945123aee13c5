"""The scheme -> provider table: built-in, first-party and third-party providers."""

from __future__ import annotations

from importlib.metadata import distribution

import pytest

from secretinit import Provider
from secretinit._errors import UnknownScheme
from secretinit._registry import (
    BUILTIN,
    COMMON_URL_SCHEMES,
    ENTRY_POINT_GROUP,
    KNOWN,
    ProviderRegistry,
)


@pytest.mark.parametrize("scheme", sorted(BUILTIN))
def test_builtin_schemes_are_registered_like_any_provider(scheme: str) -> None:
    registered = {ep.name: ep.value for ep in distribution("secretinit").entry_points}
    assert registered[scheme] == BUILTIN[scheme]


@pytest.mark.parametrize("scheme", sorted(KNOWN))
def test_known_table_matches_the_first_party_entry_points(scheme: str) -> None:
    dist_name, target = KNOWN[scheme]
    entry_points = distribution(dist_name).entry_points
    registered = {ep.name: ep.value for ep in entry_points if ep.group == ENTRY_POINT_GROUP}
    assert registered[scheme] == target


@pytest.mark.parametrize("scheme", sorted({*BUILTIN, *KNOWN}))
def test_builtin_and_known_schemes_load_without_a_scan(scheme: str) -> None:
    registry = ProviderRegistry()
    assert registry.handles(scheme)
    cls = registry.load(scheme)
    assert issubclass(cls, Provider)
    assert registry._entry_points is None  # importlib.metadata was never asked


def test_common_url_schemes_are_not_secrets_and_cost_no_scan() -> None:
    registry = ProviderRegistry()
    assert not registry.handles("https")
    assert not registry.handles("postgres")
    assert registry._entry_points is None
    assert not COMMON_URL_SCHEMES & {*BUILTIN, *KNOWN}


def test_other_schemes_are_looked_up_once() -> None:
    registry = ProviderRegistry()
    assert not registry.handles("no-such-scheme")
    scanned = registry._entry_points
    assert scanned is not None
    assert not registry.handles("another-one")
    assert registry._entry_points is scanned


def test_unknown_scheme_says_so() -> None:
    with pytest.raises(UnknownScheme, match="no installed provider handles scheme 'nope'"):
        ProviderRegistry().load("nope")


def test_installed_lists_every_registered_scheme() -> None:
    schemes = {found.scheme for found in ProviderRegistry().installed()}
    assert {*BUILTIN, *KNOWN} <= schemes
