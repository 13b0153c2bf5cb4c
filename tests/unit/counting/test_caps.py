"""Frequency caps on a reset rule's fired events, as the counter applies them."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from pia.core.events import Event
from pia.counting.counters import CounterState, Position, apply_events
from pia.counting.store import counter_from_item, counter_item
from pia.rules.caps import CapUnit, CapWindow
from pia.rules.model import Rule
from pia.rules.table import parse_rules
from tests.conftest import rule_row

T0 = datetime(2026, 11, 20, 9, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")
FAR = int(datetime(2030, 1, 1, tzinfo=UTC).timestamp())


def capped_rule(cap: str, every: int = 1) -> Rule:
    row = ("aggregator", "greenbutton", "na", "na", "equal", str(every), "na", "999", "yes", "", "")
    parsed = parse_rules([(2, rule_row(*row, Cap=cap))])
    assert not parsed.errors and not [i for i in parsed.warnings if i.column == "Cap"], parsed.issues
    return parsed.rules[0]


def ev(n: int, at: datetime) -> tuple[Position, Event]:
    return (
        Position("shardId-000000000000", 1000 + n),
        Event(
            user_id="u1",
            event_type="greenbutton",
            timestamp=at,
            attributes={},
            metrics={"clicks": Decimal(1)},
        ),
    )


def run(
    rule: Rule, events: list[tuple[Position, Event]], now: int = FAR, zone: ZoneInfo = PARIS
) -> CounterState:
    step = apply_events(
        CounterState(rule.rule_id, "u1"), rule, events, now=now, lane_retention_seconds=10**9, zone=zone
    )
    return step.state


def test_a_crossing_inside_a_full_cap_resets_and_does_not_fire() -> None:
    rule = capped_rule("2 per day", every=2)
    events = [ev(i, T0 + timedelta(minutes=i)) for i in range(9)]
    step = apply_events(CounterState(rule.rule_id, "u1"), rule, events, now=FAR, lane_retention_seconds=10**9)
    assert len(step.actions) == 2, "four crossings on one day, two fired"
    assert [a.count for a in step.actions] == [2, 2]
    assert (step.state.fired, step.state.capped) == (2, 2)
    assert step.state.count == 1, "capped crossings reset the count like fired ones"


def test_the_next_calendar_day_fires_again() -> None:
    rule = capped_rule("1 per day")
    evening = datetime(2026, 11, 20, 22, 0, tzinfo=UTC)  # 23:00 in Paris
    state = run(
        rule, [ev(0, evening), ev(1, evening + timedelta(minutes=30)), ev(2, evening + timedelta(hours=1))]
    )
    assert (state.fired, state.capped) == (2, 1), "23:00 fires, 23:30 is capped, 00:00 (Paris) fires"


def test_once_fires_one_time_and_settles() -> None:
    rule = capped_rule("once")
    events = [ev(i, T0 + timedelta(days=i * 30)) for i in range(5)]
    step = apply_events(CounterState(rule.rule_id, "u1"), rule, events, now=FAR, lane_retention_seconds=10**9)
    assert len(step.actions) == 1
    assert step.state.settled and step.settled == 4, "nothing after the one fire is ever written"


def test_a_large_cap_keeps_two_numbers_not_one_per_fire() -> None:
    rule = capped_rule("1000 per day")
    events = [ev(i, T0 + timedelta(seconds=i)) for i in range(1200)]
    state = run(rule, events)
    assert (state.fired, state.capped) == (1000, 200)
    item = counter_item(state, 0)
    assert {k: item[k] for k in ("cw", "cu", "cx")} == {
        "cw": {"N": str(state.cap.start)},
        "cu": {"N": "1000"},
        "cx": {"N": "200"},
    }
    assert counter_from_item(item).cap == state.cap == CapWindow(state.cap.start, 1000)
    assert counter_from_item(item).capped == 200


def test_an_uncapped_counter_item_carries_no_cap_attributes() -> None:
    rule = capped_rule("na")
    item = counter_item(run(rule, [ev(0, T0)]), 0)
    assert not {"cw", "cu", "cx"} & item.keys()


def test_a_device_clock_in_the_future_cannot_open_a_window_there() -> None:
    rule = capped_rule("1 per day")
    now = int(T0.timestamp())
    state = run(rule, [ev(0, datetime(2099, 1, 1, tzinfo=UTC))], now=now)
    assert state.cap.start <= now, "the crossing is charged at the batch's clock, not in 2099"
    later = apply_events(
        state,
        rule,
        [ev(1, T0 + timedelta(days=1))],
        now=now + 86_400,
        lane_retention_seconds=10**9,
        zone=PARIS,
    )
    assert len(later.actions) == 1, "the next day fires as usual"


def test_a_redelivered_crossing_is_not_charged_twice() -> None:
    rule = capped_rule("2 per day")
    events = [ev(i, T0 + timedelta(minutes=i)) for i in range(3)]
    first = run(rule, events[:1])
    again = apply_events(first, rule, events, now=FAR, lane_retention_seconds=10**9, zone=PARIS)
    assert (again.state.fired, again.state.capped, again.duplicates) == (2, 1, 1)


def _windows_respected(fires: list[int], limit: int, unit: CapUnit, span: int, zone: ZoneInfo) -> bool:
    """A plain model of the documented windows: a window opens at the top of the hour (or local
    midnight) of the first fire after the previous one closed, and lasts ``span`` hours (or days)."""
    if unit is CapUnit.EVER:
        return len(fires) <= limit
    index = 0
    while index < len(fires):
        local = datetime.fromtimestamp(fires[index], zone)
        if unit is CapUnit.HOUR:
            start = local.replace(minute=0, second=0, microsecond=0)
            end = int(start.timestamp()) + span * 3600
        else:
            end = int(
                datetime.combine(local.date() + timedelta(days=span), datetime.min.time(), zone).timestamp()
            )
        inside = [f for f in fires[index:] if f < end]
        if len(inside) > limit:
            return False
        index += len(inside)
    return True


@settings(max_examples=150, deadline=None)
@given(
    cap=st.sampled_from(
        ["once", "1 per hour", "2 per 3 hours", "1 per day", "3 per day", "2 per 2 days", "1 per week"]
    ),
    every=st.integers(1, 3),
    gaps=st.lists(st.integers(0, 6 * 3600), min_size=1, max_size=40),
    cuts=st.lists(st.integers(0, 40), max_size=6),
    replays=st.lists(st.integers(0, 10), max_size=6),
    crashes=st.lists(st.booleans(), max_size=6),
    zone=st.sampled_from([PARIS, ZoneInfo("UTC"), ZoneInfo("Asia/Kolkata")]),
)
def test_caps_never_fire_more_than_their_limit_under_batching_and_redelivery(  # type: ignore[no-untyped-def]
    cap, every, gaps, cuts, replays, crashes, zone
) -> None:
    rule = capped_rule(cap, every)
    assert rule.cap is not None
    moments = list(itertools.accumulate(gaps, initial=int(T0.timestamp())))[1:]
    events = [ev(i, datetime.fromtimestamp(m, UTC)) for i, m in enumerate(moments)]

    sequential = CounterState(rule.rule_id, "u1")
    sequential_ids = []
    for one in events:
        step = apply_events(sequential, rule, [one], now=FAR, lane_retention_seconds=10**9, zone=zone)
        sequential, sequential_ids = step.state, sequential_ids + [a.action_id for a in step.actions]

    bounds = sorted({0, len(events), *(c for c in cuts if c <= len(events))})
    state = CounterState(rule.rule_id, "u1")
    fired: dict[str, int] = {}
    for index, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        back = replays[index] if index < len(replays) else 0
        batch = events[max(0, lo - back) : hi]
        if index < len(crashes) and crashes[index]:
            apply_events(
                state, rule, batch, now=FAR, lane_retention_seconds=10**9, zone=zone
            )  # never committed
        step = apply_events(state, rule, batch, now=FAR, lane_retention_seconds=10**9, zone=zone)
        state = step.state
        for action in step.actions:
            assert action.action_id not in fired, "an action fired twice"
            fired[action.action_id] = int(action.occurred_at.timestamp())

    assert list(fired) == sequential_ids, "batching and redelivery fire exactly what one-at-a-time fires"
    crossings = len(events) // every
    if not state.settled:
        assert state.fired + state.capped == crossings, "every crossing either fired or was capped"
    assert _windows_respected(list(fired.values()), rule.cap.limit, rule.cap.unit, rule.cap.span, zone)
