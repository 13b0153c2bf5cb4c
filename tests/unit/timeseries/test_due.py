"""When a rollup is next due: evaluating only at those moments must send what evaluating at every day
boundary sends, and nothing else."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from pia.core.actions import NOT_READY, READY
from pia.rules.model import Rule
from pia.timeseries.rollups import (
    DayTotal,
    SeriesRollup,
    decide,
    kept_wake,
    load_zone,
    next_change,
    record_sent,
    wake_at,
)
from tests.unit.timeseries.test_evaluation import date_rule

TODAY = date(2026, 3, 10)
HORIZON = 120


def rolling(op: str, target: str, days: int) -> Rule:
    return date_rule(op, target, start="9999-99-99", finish="9999-99-99", Window=f"last {days} days")


def state_with(days: dict[date, int], sent: dict[str, str] | None = None) -> SeriesRollup:
    return SeriesRollup(
        "purchase",
        "u",
        version=1,
        days={d: DayTotal(c, Decimal(c)) for d, c in days.items()},
        sent=sent or {},
    )


def every_day(state: SeriesRollup, rules: list[Rule], first: date, last: date) -> list[tuple[date, str, str]]:
    """The brute force: evaluate on every day from ``first`` to ``last``."""
    sent: list[tuple[date, str, str]] = []
    day = first
    while day <= last:
        decisions = decide(state, rules, day)
        sent.extend((day, d.rule.rule_id, d.value) for d in decisions)
        state = record_sent(state, decisions)
        day += timedelta(days=1)
    return sent


def only_when_due(
    state: SeriesRollup, rules: list[Rule], first: date, last: date
) -> list[tuple[date, str, str]]:
    sent: list[tuple[date, str, str]] = []
    day = next_change(state, rules, first)
    while day is not None and day <= last:
        decisions = decide(state, rules, day)
        assert decisions, f"due on {day} but nothing to send"
        sent.extend((day, d.rule.rule_id, d.value) for d in decisions)
        state = record_sent(state, decisions)
        following = next_change(state, rules, day)
        assert following is None or following > day
        day = following
    return sent


def test_a_quiet_user_is_due_when_the_last_counted_day_slides_out_of_a_rolling_window() -> None:
    rule = rolling("greater_or_equal", "1", 7)
    state = state_with({date(2026, 3, 8): 1}, {rule.rule_id: READY})
    assert next_change(state, [rule], TODAY) == date(2026, 3, 15)
    assert decide(state, [rule], date(2026, 3, 15))[0].value == NOT_READY


def test_a_user_whose_output_cannot_change_without_an_event_is_never_due() -> None:
    rule = rolling("greater_or_equal", "1", 7)
    assert next_change(state_with({date(2026, 3, 1): 1}), [rule], TODAY) is None
    fixed = date_rule("greater_or_equal", "1")
    assert next_change(state_with({date(2026, 3, 8): 1}, {fixed.rule_id: READY}), [fixed], TODAY) is None


def test_a_change_already_owed_is_due_today() -> None:
    fixed = date_rule("greater_or_equal", "1")
    assert next_change(state_with({date(2026, 3, 8): 1}), [fixed], TODAY) == TODAY


def test_a_slide_that_keeps_the_rule_met_is_not_a_due_moment() -> None:
    rule = rolling("greater_or_equal", "2", 7)
    days = {date(2026, 3, 4): 1, date(2026, 3, 9): 5}
    state = state_with(days, {rule.rule_id: READY})
    assert next_change(state, [rule], TODAY) == date(2026, 3, 16)


def test_the_due_moment_is_the_start_of_the_day_in_the_stacks_zone() -> None:
    paris = load_zone("Europe/Paris")
    assert wake_at(date(2026, 3, 15), paris) == int(datetime(2026, 3, 14, 23, tzinfo=UTC).timestamp())
    assert wake_at(None, paris) == 0


RULES = st.lists(
    st.one_of(
        st.builds(
            lambda op, target, days: rolling(op, str(target), days),
            st.sampled_from(
                ["greater", "greater_or_equal", "smaller", "less_or_equal", "equal", "not_equal"]
            ),
            st.integers(0, 12),
            st.integers(1, 40),
        ),
        st.builds(
            lambda op, target, start, length: date_rule(
                op,
                str(target),
                start=(TODAY + timedelta(days=start)).isoformat(),
                finish=(TODAY + timedelta(days=start + length)).isoformat(),
            ),
            st.sampled_from(["greater", "smaller", "equal"]),
            st.integers(0, 12),
            st.integers(-40, 40),
            st.integers(0, 30),
        ),
    ),
    min_size=1,
    max_size=3,
    unique_by=lambda r: r.rule_id,
)


@settings(max_examples=300, deadline=None)
@given(
    rules=RULES,
    days=st.dictionaries(st.integers(-60, 20), st.integers(1, 6), max_size=12),
    ready=st.sets(st.integers(0, 2)),
)
def test_evaluating_only_when_due_sends_what_evaluating_every_day_sends(
    rules: list[Rule], days: dict[int, int], ready: set[int]
) -> None:
    sent = {rules[i].rule_id: READY for i in ready if i < len(rules)}
    state = state_with({TODAY + timedelta(days=d): c for d, c in days.items()}, sent)
    last = TODAY + timedelta(days=HORIZON)
    assert only_when_due(state, rules, TODAY, last) == every_day(state, rules, TODAY, last)


def test_a_real_time_write_keeps_an_earlier_due_moment_and_never_a_later_one() -> None:
    utc = load_zone("UTC")
    earlier, later = date(2026, 3, 12), date(2026, 3, 20)
    assert kept_wake(wake_at(earlier, utc), later, utc) == wake_at(earlier, utc)
    assert kept_wake(wake_at(earlier, utc), None, utc) == wake_at(earlier, utc)
    assert kept_wake(wake_at(later, utc), earlier, utc) == wake_at(earlier, utc)
    assert kept_wake(0, later, utc) == wake_at(later, utc)
    assert kept_wake(0, None, utc) == 0


def test_finding_the_due_day_costs_in_proportion_to_days_and_rules_not_their_product() -> None:
    """``next_change`` runs on every rollup write of the aggregator and every due rollup of the
    evaluator. It summed every day of the rollup for every rule on every candidate day: a user active
    daily for 400 days under 20 rolling rules of one series (windows 7 to 366 days, say tiers of a
    loyalty programme) took about 0.35 s of CPU per write, 100 rules 3.6 s, so one batch of such users
    outran the aggregator's timeout. Counted in function calls (machine-independent), not time."""
    import sys

    rules = [rolling("greater_or_equal", "1000", window) for window in range(7, 367, 18)]
    state = state_with({TODAY - timedelta(days=i): 1 for i in range(400)})
    calls = 0

    def count(frame: object, event: str, arg: object) -> None:
        nonlocal calls
        calls += event in ("call", "c_call")

    sys.setprofile(count)
    try:
        due = next_change(state, rules, TODAY)
    finally:
        sys.setprofile(None)
    assert due is None
    assert calls < 100_000, f"{calls} calls (1,353,163 before)"
