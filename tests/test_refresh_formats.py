"""The small formats of a refresh series: ``--on-change`` actions, the health record, a
refresh run's report, ``--max-age``; each as one table, then fuzzed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from secretinit._health import Health, max_age_seconds
from secretinit._supervisor import Report, parse_on_change

ACTIONS = [
    ("signal:HUP", "signal:HUP"),
    ("signal:SIGUSR1", "signal:USR1"),
    ("Signal:hup", "signal:HUP"),
    (" restart ", "restart"),
    ("EXIT", "exit"),
    ("none", "none"),
    ("signal:NOPE", ValueError("names no signal")),
    ("signal:", ValueError("names no signal")),
    ("reload", ValueError("is not an action: expected signal:NAME, restart, exit or none")),
    ("", ValueError("is not an action")),
]


@pytest.mark.parametrize(("text", "expected"), ACTIONS)
def test_on_change_actions(text: str, expected: str | ValueError) -> None:
    if isinstance(expected, ValueError):
        with pytest.raises(ValueError, match=str(expected)):
            parse_on_change(text)
    else:
        assert parse_on_change(text) == expected


@given(st.text(max_size=40))
def test_any_on_change_text_is_an_action_or_a_clear_error(text: str) -> None:
    try:
        action = parse_on_change(text)
    except ValueError as err:
        assert repr(text) in str(err)
    else:
        assert parse_on_change(action) == action  # the normal form is stable


MAX_AGES = [
    (None, 30.0, 90.0),  # the default: three periods
    (None, None, None),  # written once: no limit unless asked
    ("2x", 30.0, 60.0),
    ("0.5X", 10.0, 5.0),
    ("90s", None, 90.0),
    ("5m", 30.0, 300.0),
    ("3x", None, ValueError("not refreshed")),
    ("0x", 30.0, ValueError("above 0")),
    ("soon", 30.0, ValueError("expected a duration")),
]


@pytest.mark.parametrize(("text", "period", "expected"), MAX_AGES)
def test_max_ages(
    text: str | None, period: float | None, expected: float | ValueError | None
) -> None:
    if isinstance(expected, ValueError):
        with pytest.raises(ValueError, match=str(expected)):
            max_age_seconds(text, period)
    else:
        assert max_age_seconds(text, period) == expected


@given(st.text(max_size=20), st.none() | st.floats(min_value=1, max_value=86400))
def test_any_max_age_is_seconds_or_a_clear_error(text: str, period: float | None) -> None:
    try:
        seconds = max_age_seconds(text, period)
    except ValueError as err:
        assert str(err)
    else:
        assert seconds is None or seconds >= 0


names = st.lists(st.from_regex(r"[A-Za-z0-9._-]{1,12}", fullmatch=True), max_size=5)
times = st.floats(min_value=0, max_value=4e9, allow_nan=False)


@given(
    st.none() | st.floats(min_value=1, max_value=86400),
    times,
    times,
    times,
    st.integers(min_value=0, max_value=10**6),
    names,
)
def test_health_records_round_trip(
    period: float | None,
    started: float,
    succeeded: float,
    attempted: float,
    failures: int,
    failed: list[str],
) -> None:
    health = Health(period, started, succeeded, attempted, failures, tuple(failed))
    again = Health.parse(health.render().decode())
    assert again.period == (None if period is None else float(f"{period}"))
    assert abs(again.succeeded - succeeded) < 1e-3
    assert (again.failures, again.failed) == (failures, tuple(failed))


@given(st.text(max_size=200))
def test_a_damaged_health_record_is_a_value_error(text: str) -> None:
    try:
        Health.parse(text)
    except ValueError:
        pass


REPORTS = [
    ("", (0, [], [], None)),
    ("secrets 4\nchanged A B\nnext 12.5\n", (4, ["A", "B"], [], 12.5)),
    ("secrets 2\nenviron URL\n", (2, [], ["URL"], None)),
    ("secrets x\nchanged A\nnext\n", (0, ["A"], [], None)),  # cut short by a killed run
]


@pytest.mark.parametrize(("text", "expected"), REPORTS)
def test_refresh_reports(text: str, expected: tuple[object, ...]) -> None:
    report = Report(text)
    assert (report.secrets, report.changed, report.environ, report.within) == expected


@given(st.text(max_size=200))
def test_any_report_text_is_read_without_an_error(text: str) -> None:
    Report(text)
