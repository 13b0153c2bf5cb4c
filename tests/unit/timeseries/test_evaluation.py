"""Date-rule semantics: the rollup arithmetic, the real-time decision, and the vectorized evaluation
that must give the same answers."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from pia.core.actions import NOT_READY, READY
from pia.core.events import Event
from pia.counting.counters import Position
from pia.rules.model import Rule
from pia.rules.ruleset import Ruleset
from pia.rules.table import parse_rules
from pia.timeseries.archive import decode, encode, object_key
from pia.timeseries.evaluation import changes, rollup_frame, window_totals
from pia.timeseries.rollups import (
    DayTotal,
    SeriesRollup,
    absorb,
    activation_instant,
    decide,
    is_final,
    is_met,
    load_zone,
    local_day,
    plan_series,
)
from pia.timeseries.seen import MAX_VALUES_PER_ATTRIBUTE, SeenSummary
from tests.conftest import rule_row

TODAY = date(2026, 3, 10)
OPERATORS = ("greater", "greater_or_equal", "smaller", "less_or_equal", "equal", "not_equal", "na")


def date_rule(op_c: str, target_c: str, op_v: str = "na", target_v: str = "999", **extra: str) -> Rule:
    start = extra.pop("start", "2026-03-01")
    finish = extra.pop("finish", "2026-03-31")
    row = rule_row(
        "date", "purchase", "na", "na", op_c, target_c, op_v, target_v, "no", start, finish, **extra
    )
    parsed = parse_rules([(2, row)])
    assert not parsed.errors, parsed.errors
    return parsed.rules[0]


def event(user: str, moment: datetime, value: str = "1", endpoint: str | None = None) -> Event:
    return Event(
        user_id=user,
        event_type="purchase",
        timestamp=moment,
        attributes={},
        metrics={"amount": Decimal(value)},
        endpoint_id=endpoint or f"ep-{user}",
    )


def rollup(user: str, days: dict[date, tuple[int, str]], sent: dict[str, str] | None = None) -> SeriesRollup:
    return SeriesRollup(
        series="purchase",
        user_id=user,
        version=1,
        days={d: DayTotal(c, Decimal(s)) for d, (c, s) in days.items()},
        sent=sent or {},
    )


def test_window_bounds_are_inclusive_calendar_days_in_the_zone() -> None:
    paris = load_zone("Europe/Paris")
    assert local_day(datetime(2026, 2, 28, 23, 0, 0, tzinfo=UTC), paris) == date(2026, 3, 1)
    assert local_day(datetime(2026, 3, 31, 21, 59, 59, tzinfo=UTC), paris) == date(2026, 3, 31)
    assert local_day(datetime(2026, 3, 31, 22, 0, 0, tzinfo=UTC), paris) == date(2026, 4, 1)
    rule = date_rule("greater_or_equal", "1")
    state = rollup("u", {date(2026, 3, 1): (1, "0"), date(2026, 3, 31): (2, "0"), date(2026, 4, 1): (5, "0")})
    first, last = rule.window_for(TODAY) or (TODAY, TODAY)
    assert state.window_total(first, last) == DayTotal(3, Decimal(0))


def test_a_bad_timezone_is_named_clearly() -> None:
    with pytest.raises(ValueError, match="TIMEZONE 'Mars/Olympus' is not an IANA"):
        load_zone("Mars/Olympus")


def test_a_fixed_window_is_final_from_the_second_day_after_finish_date() -> None:
    rule = date_rule("greater", "1")
    assert not is_final(rule, date(2026, 4, 1))
    assert is_final(rule, date(2026, 4, 2))
    rolling = date_rule("greater", "1", start="9999-99-99", finish="9999-99-99", Window="last 7 days")
    assert not is_final(rolling, date(2030, 1, 1))


def test_activation_day_or_instant() -> None:
    assert activation_instant("2026-03-05") == datetime(2026, 3, 5, tzinfo=UTC)
    assert activation_instant("2026-03-05T10:30:00+01:00") == datetime(2026, 3, 5, 9, 30, tzinfo=UTC)


def test_plan_series_groups_open_rules_and_skips_final_ones() -> None:
    open_rule = date_rule("greater", "1", "greater", "10", MetricName="amount")
    count_rule = date_rule("greater", "2", OutputName="trk_two")
    closed = date_rule("greater", "3", start="2026-01-01", finish="2026-01-31", OutputName="trk_jan")
    ruleset = Ruleset(
        version=3,
        rules=(open_rule, count_rule, closed),
        series_activation={"purchase#amount": "2026-03-05", "purchase": "2026-03-06"},
    )
    plans = plan_series(ruleset, TODAY)
    assert set(plans) == {"purchase#amount", "purchase"}
    assert plans["purchase"].rules == (count_rule,)
    assert plans["purchase#amount"].starts == datetime(2026, 3, 5, tzinfo=UTC)


def test_absorb_counts_each_record_once_and_leaves_older_events_to_the_backfill() -> None:
    rule = date_rule("greater", "1", "greater", "1", MetricName="amount")
    (plan,) = plan_series(
        Ruleset(version=1, rules=(rule,), series_activation={rule.series: "2026-03-05"}), TODAY
    ).values()
    zone = load_zone("UTC")
    events = [
        (Position("s1", 1), event("u", datetime(2026, 3, 4, 23, 59, 59, tzinfo=UTC), "100")),
        (Position("s1", 2), event("u", datetime(2026, 3, 5, 0, 0, tzinfo=UTC), "2.5")),
        (Position("s1", 3), event("u", datetime(2026, 3, 9, 12, 0, tzinfo=UTC), "0.1")),
        (Position("s2", 7), event("u", datetime(2026, 3, 9, 13, 0, tzinfo=UTC), "0.2")),
    ]
    kwargs: dict[str, Any] = {
        "zone": zone,
        "oldest": date(2025, 3, 1),
        "now": 1,
        "lane_retention_seconds": 99,
    }
    step = absorb(SeriesRollup("purchase#amount", "u"), plan, events, **kwargs)
    assert step.applied == 3
    assert step.state.days == {
        date(2026, 3, 5): DayTotal(1, Decimal("2.5")),
        date(2026, 3, 9): DayTotal(2, Decimal("0.3")),
    }
    again = absorb(step.state, plan, events, **kwargs)
    assert (again.applied, again.duplicates, again.last) == (0, 4, None)


def test_real_time_decision_only_looks_at_rules_whose_window_holds_the_new_days() -> None:
    march = date_rule("greater", "1")
    april = date_rule("greater", "1", start="2026-04-01", finish="2026-04-30", OutputName="trk_april")
    state = rollup("u", {date(2026, 3, 2): (2, "0"), date(2026, 4, 2): (3, "0")})
    (decision,) = decide(state, (march, april), TODAY, {date(2026, 3, 2)})
    assert (decision.rule, decision.value, decision.totals.count) == (march, READY, 2)
    assert {d.rule for d in decide(state, (march, april), date(2026, 4, 5))} == {march, april}


def test_equal_rule_turns_not_ready_once_exceeded_and_users_without_events_are_not_considered() -> None:
    equal_two = date_rule("equal", "2")
    smaller = date_rule("smaller", "3", OutputName="trk_few")
    ready = rollup("u", {date(2026, 3, 2): (3, "0")}, sent={equal_two.rule_id: READY})
    (decision,) = decide(ready, (equal_two,), TODAY)
    assert decision.value == NOT_READY
    quiet = rollup("q", {date(2026, 2, 1): (1, "0")})
    assert decide(quiet, (smaller,), TODAY) == []


def test_vectorized_evaluation_agrees_with_the_real_time_decision() -> None:
    rng = random.Random(7)
    targets = ("0", "1", "2", "2.5", "3", "-1.5", "10.25")
    rules: list[Rule] = []
    for i in range(60):
        op_c, op_v = rng.choice(OPERATORS), rng.choice(OPERATORS)
        if op_c == op_v == "na":
            op_c = "greater"
        window = {"Window": f"last {rng.randint(1, 20)} days"} if i % 3 == 0 else {}
        dates = ("9999-99-99", "9999-99-99") if window else ("2026-03-01", "2026-03-31")
        rules.append(
            date_rule(
                op_c,
                rng.choice(targets),
                op_v,
                rng.choice(targets),
                start=dates[0],
                finish=dates[1],
                MetricName="amount",
                OutputName=f"trk_r{i}",
                **window,
            )
        )
    states = []
    for u in range(40):
        days = {
            TODAY - timedelta(days=rng.randint(0, 25)): (
                rng.randint(1, 3),
                str(Decimal(rng.randint(-300, 900)) / 100),
            )
            for _ in range(rng.randint(0, 6))
        }
        sent = {r.rule_id: rng.choice((READY, NOT_READY)) for r in rules if rng.random() < 0.3}
        states.append(rollup(f"user-{u}", days, sent))
    frame = rollup_frame(states)
    for rule in rules:
        found = changes(rule, frame, TODAY)
        vectorized = {
            user: (value, int(count), Decimal(total))
            for user, value, count, total in zip(
                found.index, found["value"], found["count"], found["total"], strict=True
            )
        }
        scalar = {
            s.user_id: (d.value, d.totals.count, d.totals.total)
            for s in states
            for d in decide(s, (rule,), TODAY)
        }
        assert vectorized == scalar, rule


def test_window_totals_are_exact_decimals() -> None:
    rule = date_rule("na", "999", "equal", "0.3", MetricName="amount")
    state = rollup("u", {date(2026, 3, 2): (1, "0.1"), date(2026, 3, 3): (1, "0.2")})
    totals = window_totals(rule, rollup_frame([state]), TODAY)
    assert totals.loc["u", "total"] == Decimal("0.3")
    assert list(changes(rule, rollup_frame([state]), TODAY)["value"]) == [READY]


def test_raw_archive_lines_round_trip_and_a_damaged_line_is_counted() -> None:
    from pia.counting.aggregator import InboundRecord

    moment = datetime(2026, 3, 9, 12, 0, 0, 123000, tzinfo=UTC)
    records = [
        InboundRecord(Position("shardId-1/pk", 10**60 + i), event(f"u{i}", moment, "0.1")) for i in range(3)
    ]
    decoded = decode(encode(records))
    assert [(p, e) for p, e in decoded.events] == [(r.position, r.event) for r in records]
    key = object_key(records, datetime(2026, 3, 9, 13, 5, tzinfo=UTC))
    assert key.startswith("raw/2026/03/09/13/shardId-1-") and key.endswith(".jsonl.gz")
    assert key == object_key(list(reversed(records)), datetime(2026, 3, 9, 13, 59, tzinfo=UTC))

    import gzip

    damaged = gzip.compress(gzip.decompress(encode(records)) + b'\n{"l": "x"}\nnot json')
    assert (len(decode(damaged).events), decode(damaged).bad_lines) == (3, 2)


def test_seen_summary_is_bounded_and_survives_a_round_trip() -> None:
    summary = SeenSummary()
    for i in range(MAX_VALUES_PER_ATTRIBUTE + 50):
        summary.add_values("greenbutton", {"color": f"c{i}", "size": "L"})
    again = SeenSummary.loads(summary.dumps())
    assert len(again.events["greenbutton"]["color"]) == MAX_VALUES_PER_ATTRIBUTE
    assert again.events["greenbutton"]["size"] == {"L"}


@pytest.mark.parametrize(
    ("op", "target", "met"),
    [
        ("greater", "1E+5000000", False),
        ("greater_or_equal", "1E+5000000", False),
        ("equal", "1E+5000000", False),
        ("smaller", "1E+5000000", True),
        ("less_or_equal", "1E+5000000", True),
        ("not_equal", "1E+5000000", True),
        ("greater", "-1E+5000000", True),
        ("smaller", "-1E+5000000", False),
    ],
)
def test_a_count_target_beyond_any_count_is_decided_without_expanding_it(
    op: str, target: str, met: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ruleset published before targets were bounded can hold ``1e5000000``: turning it into an
    integer took longer than the evaluator's timeout, on every run."""
    import math
    from dataclasses import replace
    from types import SimpleNamespace

    from pia.rules.model import Comparison, Condition
    from pia.timeseries import evaluation

    def bounded(function: Any) -> Any:
        def call(value: Decimal) -> int:
            assert value.copy_abs().adjusted() < 19, f"expanded a count target of {value}"
            return int(function(value))

        return call

    monkeypatch.setattr(
        evaluation, "math", SimpleNamespace(floor=bounded(math.floor), ceil=bounded(math.ceil))
    )
    words = {"greater": ">", "greater_or_equal": ">=", "equal": "=", "smaller": "<", "less_or_equal": "<="}
    rule = replace(
        date_rule("greater", "1"),
        count_condition=Condition(Comparison(words.get(op, "!=")), Decimal(target)),
    )
    state = rollup("u1", {date(2026, 3, 5): (3, "1")})
    assert list(changes(rule, rollup_frame([state]), TODAY)["value"]) == ([READY] if met else [])


def test_an_avg_date_rule_compares_the_window_average_in_both_implementations() -> None:
    """The average is the window's sum over its count of measured events (each day's rollup of an
    ``avg`` rule counts only events carrying the metric), compared exactly."""
    rule = date_rule("na", "999", "greater", "10", Aggregate="avg", MetricName="amount")
    assert rule.series == "purchase#amount#measured"
    assert not rule.matches(Event("u", "purchase", datetime(2026, 3, 2, tzinfo=UTC), {}, {})), "not read"
    days = {
        "even": {date(2026, 3, 2): (2, "20"), date(2026, 3, 3): (1, "10")},
        "above": {date(2026, 3, 2): (3, "31")},
        "just": {date(2026, 3, 5): (1, "10.0000001")},
        "outside": {date(2026, 2, 20): (1, "99")},
    }
    frame = rollup_frame([rollup(user, d) for user, d in days.items()])
    vectorized = set(changes(rule, frame, TODAY).index)
    first, last = rule.window_for(TODAY) or (TODAY, TODAY)
    scalar = {user for user, d in days.items() if is_met(rule, rollup(user, d).window_total(first, last))}
    assert vectorized == scalar == {"above", "just"}, "compared exactly, never through the rounded mean"
