"""The Cap column: its grammar, its row-level messages, and what it does to a rule's id."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from pia.rules.caps import Cap, CapError, CapUnit, CapWindow, parse_cap
from pia.rules.model import Rule
from pia.rules.table import Severity, parse_rules
from tests.conftest import rule_row

RESET_ROW = ("aggregator", "course_completed", "na", "na", "equal", "3", "na", "999", "yes", "", "")
ONCE_ROW = ("aggregator", "greenbutton", "na", "na", "greater", "5", "na", "999", "no", "", "")
DATE_ROW = ("date", "purchase", "na", "na", "na", "999", ">", "500", "no", "2026-01-01", "2026-02-01")


@pytest.mark.parametrize(
    ("cell", "cap"),
    [
        ("once", Cap(1, CapUnit.EVER)),
        ("ONCE", Cap(1, CapUnit.EVER)),
        ("1 per 7 days", Cap(1, CapUnit.DAY, 7)),
        ("3 per day", Cap(3, CapUnit.DAY)),
        ("3 times per day", Cap(3, CapUnit.DAY)),
        ("once per week", Cap(1, CapUnit.DAY, 7)),
        ("2 per 2 weeks", Cap(2, CapUnit.DAY, 14)),
        ("10  per   hour", Cap(10, CapUnit.HOUR)),
        ("1 per 6 hours", Cap(1, CapUnit.HOUR, 6)),
        ("1000 per day", Cap(1000, CapUnit.DAY)),
    ],
)
def test_the_cap_grammar_reads_what_a_marketer_writes(cell: str, cap: Cap) -> None:
    assert parse_cap(cell) == cap
    assert parse_cap(cap.source) == cap, "the canonical text reads back as the same cap"


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("twice a day", "position 1"),
        ("3 per fortnight", r"week\(s\) at position 7"),
        ("x per day", '"x" at position 1 is not a whole number'),
        ("0 per day", "a limit of 0 at position 1 is outside 1..1000000"),
        ("1 per 0 days", "a window of 0 at position 7 is outside 1..366"),
        ("1 per 400 days", "outside 1..366"),
        ("1 per 60 weeks", "outside 1..52"),
        ("1.5 per day", "not a whole number"),
        ("² per day", "not a whole number"),
        ("1" * 40 + " per day", "a limit of 111111111... at position 1 is outside 1..1000000"),
        ("1 per " + "9" * 40 + " days", "outside 1..366"),
        ("1" * 5000 + " per day", "longer than 60 characters"),
        ("3 per day " * 2000, "longer than 60 characters"),
    ],
)
def test_a_bad_cap_is_a_row_error_that_names_the_position(cell: str, message: str) -> None:
    with pytest.raises(CapError, match=message):
        parse_cap(cell)
    parsed = parse_rules([(2, rule_row(*RESET_ROW, Cap=cell)), (3, rule_row(*ONCE_ROW))])
    assert [(i.row, i.column) for i in parsed.errors] == [(2, "Cap")]
    assert f'"{cell[:57]}' in parsed.errors[0].message
    assert [r.row for r in parsed.rules] == [3], "one bad Cap cell never disables the other rows"


def test_a_cap_gives_a_new_rule_id_and_leaves_uncapped_ids_alone() -> None:
    plain = parse_rules([(2, rule_row(*RESET_ROW))]).rules[0]
    na_cap = parse_rules([(2, rule_row(*RESET_ROW, Cap="na"))]).rules[0]
    empty_cap = parse_rules([(2, rule_row(*RESET_ROW, Cap=""))]).rules[0]
    daily = parse_rules([(2, rule_row(*RESET_ROW, Cap="1 per day"))]).rules[0]
    weekly = parse_rules([(2, rule_row(*RESET_ROW, Cap="1 per week"))]).rules[0]
    seven_days = parse_rules([(2, rule_row(*RESET_ROW, Cap="1 per 7 days"))]).rules[0]
    assert plain.rule_id == na_cap.rule_id == empty_cap.rule_id
    assert len({plain.rule_id, daily.rule_id, weekly.rule_id}) == 3
    assert weekly.rule_id == seven_days.rule_id, "the same cap written two ways is one rule"
    assert "cap" not in plain.to_json(), "rulesets without caps keep their content hash"
    assert Rule.from_json(daily.to_json()) == daily


@pytest.mark.parametrize(
    ("row", "reason"), [(ONCE_ROW, "ResetWhenReachTarget is no"), (DATE_ROW, "date rules")]
)
def test_a_cap_on_a_rule_that_fires_nothing_is_a_warning_and_is_ignored(
    row: tuple[str, ...], reason: str
) -> None:
    parsed = parse_rules([(2, rule_row(*row, Cap="3 per day"))])
    assert not parsed.errors
    assert [(i.column, i.severity) for i in parsed.warnings] == [("Cap", Severity.WARNING)]
    assert reason in parsed.warnings[0].message
    (live,) = parsed.rules
    assert live.cap is None
    assert live.rule_id == parse_rules([(2, rule_row(*row))]).rules[0].rule_id


def test_day_windows_are_calendar_days_in_the_deployment_time_zone() -> None:
    paris = ZoneInfo("Europe/Paris")
    cap = Cap(1, CapUnit.DAY)
    late_evening = int(datetime(2026, 11, 20, 22, 30, tzinfo=UTC).timestamp())  # 23:30 in Paris
    after_midnight = int(datetime(2026, 11, 20, 23, 5, tzinfo=UTC).timestamp())  # 00:05 next day
    allowed, window = cap.admit(CapWindow(), late_evening, paris)
    assert allowed and window.start == int(datetime(2026, 11, 20, tzinfo=paris).timestamp())
    assert cap.admit(window, after_midnight, paris)[0], "a new Paris day opens a new window"
    utc_allowed, utc_window = cap.admit(CapWindow(), late_evening, ZoneInfo("UTC"))
    assert utc_allowed
    assert not cap.admit(utc_window, after_midnight, ZoneInfo("UTC"))[0], "still 20 November in UTC"


def test_a_day_window_over_a_daylight_saving_change_ends_at_local_midnight() -> None:
    paris = ZoneInfo("Europe/Paris")
    cap = Cap(1, CapUnit.DAY, 2)
    start = int(datetime(2026, 10, 24, 12, tzinfo=paris).timestamp())
    _, window = cap.admit(CapWindow(), start, paris)
    assert cap.window_end(window.start, paris) == int(datetime(2026, 10, 26, tzinfo=paris).timestamp())
    assert cap.window_end(window.start, paris) - window.start == 2 * 86_400 + 3_600


def test_an_event_stamped_at_the_epoch_still_opens_a_window() -> None:
    allowed, window = Cap(1, CapUnit.EVER).admit(CapWindow(), 0, ZoneInfo("UTC"))
    assert allowed and window == CapWindow(0, 1)
    assert not Cap(1, CapUnit.EVER).admit(window, 10, ZoneInfo("UTC"))[0]


def test_a_cap_answers_the_every_event_warning() -> None:
    every_login = ("aggregator", "login", "na", "na", "greater_or_equal", "1", "na", "999", "yes", "", "")
    assert [i.column for i in parse_rules([(2, rule_row(*every_login))]).warnings] == ["Operator-C"]
    assert not parse_rules([(2, rule_row(*every_login, Cap="1 per day"))]).issues
