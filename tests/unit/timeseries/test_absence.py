"""Absence rules over daily rollups: who enters when the quiet period passes, who leaves on acting
again, and the due moments that make the evaluator find them without reading anyone else."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from pia.core.actions import NOT_READY, READY
from pia.counting.counters import Position
from pia.rules.model import Rule
from pia.rules.ruleset import Ruleset
from pia.rules.table import parse_rules
from pia.timeseries.backfill import backfill_tasks
from pia.timeseries.evaluation import changes, rollup_frame
from pia.timeseries.rollups import (
    DayTotal,
    SeriesRollup,
    absorb,
    decide,
    in_audience,
    load_zone,
    local_day,
    next_change,
    plan_series,
    record_sent,
    wake_at,
)
from pia.timeseries.store import rollup_from_item, rollup_item
from tests.conftest import rule_row
from tests.unit.timeseries.test_due import rolling
from tests.unit.timeseries.test_evaluation import event

TODAY = date(2026, 3, 10)


def absent(days: int, event_name: str = "purchase") -> Rule:
    row = rule_row(
        "date", event_name, "na", "na", "absent", "na", "na", "999", "no", "9999-99-99", "9999-99-99"
    )
    row["Window"] = f"last {days} days"
    parsed = parse_rules([(2, row)])
    assert not parsed.errors, parsed.errors
    return parsed.rules[0]


def user(days: dict[date, int], sent: dict[str, str] | None = None, backfill: bool = False) -> SeriesRollup:
    totals = {d: DayTotal(c, Decimal(0)) for d, c in days.items()}
    return SeriesRollup(
        "purchase",
        "u",
        version=1,
        days={} if backfill else totals,
        backfill=totals if backfill else {},
        sent=sent or {},
    )


def values(state: SeriesRollup, rules: list[Rule], today: date) -> list[str]:
    return [d.value for d in decide(state, rules, today)]


def test_a_user_enters_exactly_n_days_after_their_last_event_day() -> None:
    rule = absent(14)
    state = user({TODAY: 1})
    assert values(state, [rule], TODAY + timedelta(days=13)) == []
    assert values(state, [rule], TODAY + timedelta(days=14)) == [READY]
    assert next_change(state, [rule], TODAY) == TODAY + timedelta(days=14)


def test_an_event_on_the_due_day_keeps_the_user_out_and_moves_the_due_day() -> None:
    rule = absent(14)
    due = TODAY + timedelta(days=14)
    state = user({TODAY: 1, due: 1})
    assert values(state, [rule], due) == []
    assert next_change(state, [rule], due) == due + timedelta(days=14)


def test_a_user_never_seen_is_never_in_the_audience() -> None:
    rule = absent(14)
    nobody = user({})
    assert values(nobody, [rule], TODAY) == []
    assert next_change(nobody, [rule], TODAY) is None
    assert changes(rule, rollup_frame([nobody]), TODAY).empty


def test_a_user_in_the_audience_stays_in_it_when_their_history_is_gone() -> None:
    """A series rebuilt on a new activation finds no day of a user quiet for longer than the
    retention: only an event takes a user out."""
    rule = absent(14)
    held = user({}, {rule.rule_id: READY})
    assert values(held, [rule], TODAY) == []
    assert changes(rule, rollup_frame([held]), TODAY).empty


def test_history_older_than_the_quiet_period_puts_the_user_in_at_once() -> None:
    """A backfilled purchase 40 days ago: the user has been quiet 30 days already."""
    rule = absent(30)
    state = user({TODAY - timedelta(days=40): 2}, backfill=True)
    assert values(state, [rule], TODAY) == [READY]
    assert next_change(state, [rule], TODAY) == TODAY


def test_acting_again_takes_the_user_out_in_the_batch_that_holds_the_event() -> None:
    rule = absent(14)
    plan = plan_series(Ruleset(version=1, rules=(rule,)), TODAY)[rule.series]
    state = user({TODAY - timedelta(days=20): 1}, {rule.rule_id: READY})
    moment = datetime(2026, 3, 10, 9, tzinfo=UTC)
    step = absorb(
        state,
        plan,
        [(Position("shard-0", "1"), event("u", moment))],
        zone=load_zone("UTC"),
        oldest=TODAY - timedelta(days=400),
        now=int(moment.timestamp()),
        lane_retention_seconds=3600,
    )
    decisions = decide(step.state, plan.rules, TODAY, step.days)
    assert [d.value for d in decisions] == [NOT_READY]
    left = record_sent(step.state, decisions)
    assert not in_audience(left, [rule])
    assert next_change(left, [rule], TODAY) == TODAY + timedelta(days=14)


def test_a_late_event_stamped_before_the_quiet_period_does_not_take_the_user_out() -> None:
    rule = absent(14)
    state = user({TODAY - timedelta(days=30): 1, TODAY - timedelta(days=20): 1}, {rule.rule_id: READY})
    assert decide(state, [rule], TODAY, touched={TODAY - timedelta(days=20)}) == []


def test_an_event_stamped_ahead_of_the_clock_counts_as_acting_until_its_own_day_slides_out() -> None:
    rule = absent(7)
    ahead = TODAY + timedelta(days=3)
    state = user({TODAY - timedelta(days=30): 1, ahead: 1})
    assert values(state, [rule], TODAY) == []
    assert next_change(state, [rule], TODAY) == ahead + timedelta(days=7)


def test_the_quiet_period_is_counted_in_the_stacks_time_zone() -> None:
    """23:30 in New York on 9 March is 10 March in UTC: the day that counts is the 9th, and the user
    is due at midnight New York time seven days on."""
    new_york = load_zone("America/New_York")
    moment = datetime(2026, 3, 10, 3, 30, tzinfo=UTC)
    last = local_day(moment, new_york)
    assert last == date(2026, 3, 9)
    rule = absent(7)
    state = user({last: 1})
    due = next_change(state, [rule], last)
    assert due == date(2026, 3, 16)
    assert wake_at(due, new_york) == int(datetime(2026, 3, 16, 4, tzinfo=UTC).timestamp())
    assert values(state, [rule], local_day(datetime(2026, 3, 16, 3, 59, tzinfo=UTC), new_york)) == []
    assert values(state, [rule], local_day(datetime(2026, 3, 16, 4, 0, tzinfo=UTC), new_york)) == [READY]


def test_a_new_absence_series_is_backfilled_as_far_back_as_the_retention() -> None:
    rule = absent(30)
    ruleset = Ruleset(
        version=1,
        rules=(rule,),
        published_at="2026-03-01T00:00:00+00:00",
        series_activation={rule.series: "2026-03-02"},
    )
    plans = plan_series(ruleset, TODAY)
    oldest = TODAY - timedelta(days=400)
    (task,) = backfill_tasks(plans, {}, TODAY, datetime(2026, 3, 10, tzinfo=UTC), oldest=oldest)
    assert task.first_day == oldest


def test_the_rollup_of_a_user_in_the_audience_never_expires_and_others_outlive_their_due_moment() -> None:
    rule = absent(30)
    now = int(datetime(2026, 3, 10, tzinfo=UTC).timestamp())
    held = replace_sent(user({TODAY - timedelta(days=40): 1}), rule, READY)
    item = rollup_item(held, now, retention_days=400)
    assert "ttl" not in item and rollup_from_item(item).keep

    wake = wake_at(TODAY + timedelta(days=20), load_zone("UTC"))
    waiting = SeriesRollup(
        "purchase", "u", version=1, days={TODAY - timedelta(days=10): DayTotal(1)}, wake=wake
    )
    short = rollup_item(waiting, now, retention_days=5)
    assert int(short["ttl"]["N"]) >= wake + 86_400


def replace_sent(state: SeriesRollup, rule: Rule, value: str) -> SeriesRollup:
    new = record_sent(state, decide(state, [rule], TODAY))
    assert new.sent == {rule.rule_id: value}
    return replace(new, keep=in_audience(new, [rule]))


STATES = st.builds(
    lambda days, sent, backfill: (days, sent, backfill),
    st.dictionaries(st.integers(-60, 10), st.integers(1, 3), max_size=6),
    st.booleans(),
    st.booleans(),
)


@settings(max_examples=150, deadline=None)
@given(users=st.lists(STATES, min_size=1, max_size=6), window=st.integers(1, 40))
def test_the_vectorized_evaluation_agrees_with_the_per_user_decision(
    users: list[tuple[dict[int, int], bool, bool]], window: int
) -> None:
    rule = absent(window)
    states = [
        SeriesRollup(
            "purchase",
            f"u{n}",
            version=1,
            days={} if backfill else {TODAY + timedelta(days=d): DayTotal(c) for d, c in days.items()},
            backfill={TODAY + timedelta(days=d): DayTotal(c) for d, c in days.items()} if backfill else {},
            sent={rule.rule_id: READY} if sent else {},
        )
        for n, (days, sent, backfill) in enumerate(users)
    ]
    frame = changes(rule, rollup_frame(states), TODAY)
    vectorized = dict(zip(frame.index, frame["value"], strict=True))
    per_user = {s.user_id: d.value for s in states for d in decide(s, [rule], TODAY)}
    assert vectorized == per_user


HORIZON = 90


def simulate(
    rules: list[Rule], arrivals: dict[int, list[int]], *, due_only: bool
) -> list[tuple[int, str, str]]:
    """Days 0..HORIZON. Each day starts with the evaluator (at every boundary, or only when the rollup
    is due), then the day's events arrive (``arrivals[day]``: how many days before that day each one is
    stamped), decided in real time as the aggregator does."""
    state = user({})
    sent: list[tuple[int, str, str]] = []
    due = next_change(state, rules, TODAY)
    for offset in range(HORIZON + 1):
        today = TODAY + timedelta(days=offset)
        if not due_only or (due is not None and due <= today):
            decisions = decide(state, rules, today)
            assert decisions or not due_only, f"due on {today} with nothing to send"
            sent.extend((offset, d.rule.rule_id, d.value) for d in decisions)
            state = record_sent(state, decisions)
            due = next_change(state, rules, today)
        if offset in arrivals:
            days = dict(state.days)
            touched = set()
            for ago in arrivals[offset]:
                stamped = today - timedelta(days=ago)
                days[stamped] = days.get(stamped, DayTotal()).plus(DayTotal(1))
                touched.add(stamped)
            state = replace(state, days=days)
            decisions = decide(state, rules, today, touched)
            sent.extend((offset, d.rule.rule_id, d.value) for d in decisions)
            state = record_sent(state, decisions)
            due = next_change(state, rules, today)
    return sent


@settings(max_examples=200, deadline=None)
@given(
    windows=st.lists(st.integers(1, 30), min_size=1, max_size=2, unique=True),
    with_count_rule=st.booleans(),
    arrivals=st.dictionaries(
        st.integers(0, HORIZON), st.lists(st.integers(0, 45), min_size=1, max_size=3), max_size=8
    ),
)
def test_evaluating_only_at_due_moments_gives_the_entries_and_exits_of_evaluating_every_day(
    windows: list[int], with_count_rule: bool, arrivals: dict[int, list[int]]
) -> None:
    rules = [absent(days) for days in windows]
    if with_count_rule:
        rules.append(rolling("greater_or_equal", "2", 10))
    every_day = simulate(rules, arrivals, due_only=False)
    assert simulate(rules, arrivals, due_only=True) == every_day
