"""Aggregates kept in the counter item and written as values (issue #16, item 2): each aggregate's
edge values, the distinct bound, value outputs sent only on change and rate-limited, and a property
test against a plain sequential model under random batching and redelivery."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pia.core.actions import ActionKind
from pia.core.events import Event, RecordRejected, parse_event
from pia.core.state import MAX_PENDING, Pending
from pia.counting.counters import (
    MAX_LANE_MARKS,
    RECENT_EVENT_IDS,
    CounterState,
    LaneMark,
    Position,
    Step,
    apply_events,
    value_schedule,
)
from pia.counting.store import counter_from_item, counter_item
from pia.rules.aggregates import MAX_DISTINCT, VALUE_UPDATE_SECONDS, mean
from pia.rules.model import Rule
from pia.rules.table import parse_rules
from pia_cli.service_limits import DYNAMODB_MAX_ITEM, attribute_size
from tests.conftest import PURCHASE_NO_CONDITION, rule_row

T0 = datetime(2026, 11, 20, 9, tzinfo=UTC)
NOW = int(T0.timestamp())
SHARD = "shardId-000000000000"


def value_rule(aggregate: str, metric: str = "price") -> Rule:
    row = rule_row(
        *PURCHASE_NO_CONDITION, Aggregate=aggregate, Output="value", MetricName=metric, OutputName="trk_v"
    )
    parsed = parse_rules([(2, row)])
    assert not parsed.errors, parsed.errors
    return parsed.rules[0]


def ev(n: int, price: Decimal | None = None, sku: str | None = None) -> tuple[Position, Event]:
    return (
        Position(SHARD, 1000 + n),
        Event(
            user_id="u1",
            event_type="purchase",
            timestamp=T0 + timedelta(seconds=n),
            attributes={} if sku is None else {"sku": sku},
            metrics={} if price is None else {"price": price},
            endpoint_id="ep1",
        ),
    )


def apply(state: CounterState, rule: Rule, events: list[tuple[Position, Event]], now: int = NOW) -> Step:
    matching = [(p, e) for p, e in events if rule.matches(e)]
    return apply_events(state, rule, matching, now=now, lane_retention_seconds=90_000)


def fresh(rule: Rule) -> CounterState:
    return CounterState(rule_id=rule.rule_id, user_id="u1")


def written(rule: Rule, *prices: str) -> list[str | None]:
    """The values a rule writes when each price arrives in its own batch, an interval apart."""
    state, values = fresh(rule), []
    for n, price in enumerate(prices):
        metric = Decimal(price) if price[-1].isdigit() else None
        step = apply(state, rule, [ev(n, metric, sku=price)], now=NOW + n * VALUE_UPDATE_SECONDS)
        state = step.state
        values.extend(a.value for a in step.actions)
    return values


@pytest.mark.parametrize(
    ("aggregate", "prices", "expected"),
    [
        ("count", ["5"], ["1"]),
        ("sum", ["412.50"], ["412.50"]),
        ("avg", ["412.50"], ["412.5"]),
        ("min", ["-3"], ["-3"]),
        ("max", ["-3"], ["-3"]),
        ("distinct(sku)", ["x"], ["1"]),
        ("sum", ["-1", "1"], ["-1", "0"]),
        ("avg", ["1", "2", "-9"], ["1", "1.5", "-2"]),
        ("avg", ["1", "0", "0"], ["1", "0.5", "0.333333"]),
        ("min", ["3", "-1E+2", "5"], ["3", "-100"]),
        ("max", ["-7.5", "-7.50", "1e2"], ["-7.5", "100"]),
        ("distinct(sku)", ["a", "b", "a"], ["1", "2"]),
        ("sum", ["1.7976931348623157e308", "-1.7976931348623157e308"], ["1.7976931348623157E+308", "0"]),
        ("max", ["1.7976931348623157e308"], ["1.7976931348623157E+308"]),
    ],
)
def test_each_aggregate_writes_its_exact_value_and_only_when_it_changes(
    aggregate: str, prices: list[str], expected: list[str]
) -> None:
    assert written(value_rule(aggregate), *prices) == expected


def test_no_event_writes_nothing_and_events_without_the_metric_are_not_read() -> None:
    rule = value_rule("avg")
    assert apply(fresh(rule), rule, []).actions == ()
    step = apply(fresh(rule), rule, [ev(1), ev(2, sku="a")])
    assert (step.applied, step.actions) == (0, ())
    step = apply(fresh(rule), rule, [ev(1, Decimal(4)), ev(2), ev(3, Decimal(6))])
    assert (step.state.count, [a.value for a in step.actions]) == (2, ["5"])


def test_a_run_writes_one_value_the_last() -> None:
    rule = value_rule("sum")
    step = apply(fresh(rule), rule, [ev(n, Decimal(n)) for n in range(1, 5)])
    (action,) = step.actions
    assert (action.kind, action.value, action.output_name, action.count) == (
        ActionKind.SET_ATTRIBUTE,
        "10",
        "trk_v",
        4,
    )


def test_a_redelivered_run_writes_nothing_and_counts_nothing() -> None:
    rule = value_rule("sum")
    events = [ev(n, Decimal(n)) for n in range(1, 5)]
    first = apply(fresh(rule), rule, events)
    again = apply(first.state, rule, events, now=NOW + 10 * VALUE_UPDATE_SECONDS)
    assert (again.applied, again.duplicates, again.actions) == (0, 4, ())


def test_distinct_is_exact_to_its_bound_then_says_so() -> None:
    rule = value_rule("distinct(sku)", metric="na")
    events = [ev(n, sku=f"sku-{n}") for n in range(MAX_DISTINCT)]
    step = apply(fresh(rule), rule, events)
    assert [a.value for a in step.actions] == [str(MAX_DISTINCT)]
    assert not step.state.measures.distinct_over
    step = apply(step.state, rule, [ev(MAX_DISTINCT, sku="sku-0")], now=NOW + VALUE_UPDATE_SECONDS)
    assert step.actions == (), "a value already seen at the bound changes nothing"
    step = apply(step.state, rule, [ev(MAX_DISTINCT + 1, sku="new")], now=NOW + 2 * VALUE_UPDATE_SECONDS)
    assert [a.value for a in step.actions] == [f"{MAX_DISTINCT}+"]
    assert step.state.measures.distinct_over and len(step.state.measures.distinct) == MAX_DISTINCT


def test_a_distinct_condition_past_the_bound_compares_as_more() -> None:
    row = rule_row(
        *PURCHASE_NO_CONDITION, Aggregate="distinct(sku)", **{"Operator-V": ">", "Target-V": "1000"}
    )
    (rule,) = parse_rules([(2, row)]).rules
    step = apply(fresh(rule), rule, [ev(n, sku=str(n)) for n in range(MAX_DISTINCT)])
    assert step.actions == ()
    step = apply(step.state, rule, [ev(MAX_DISTINCT, sku="one more")])
    assert [a.value for a in step.actions] == ["ready"]


def test_a_full_distinct_counter_stays_far_under_the_item_limit() -> None:
    """The largest counter item: every distinct digest, every lane mark, endpoint and recent id, and a
    full outbox of the largest actions, measured with the strict local limits' own size rule."""
    rule = value_rule("distinct(sku)", metric="na")
    state = apply(fresh(rule), rule, [ev(n, sku="s" * 200 + str(n)) for n in range(MAX_DISTINCT + 1)]).state
    action = apply(fresh(rule), rule, [ev(0, sku="x")]).actions[0]
    big = type(action)(
        **{**action.__dict__, "endpoint_ids": tuple("e" * 256 for _ in range(15)), "user_id": "u" * 256}
    )
    state = CounterState(
        **{
            **state.__dict__,
            "user_id": "u" * 256,
            "lanes": {f"{SHARD}/{'k' * 256}{i}": LaneMark(10**128, NOW) for i in range(MAX_LANE_MARKS)},
            "endpoints": tuple("e" * 256 for _ in range(15)),
            "recent_ids": tuple(f"{i:016x}" for i in range(RECENT_EVENT_IDS)),
            "pending": tuple(Pending(big, "eventbridge", 7, "r" * 500) for _ in range(MAX_PENDING)),
            "due": NOW,
        }
    )
    item = counter_item(state, NOW)
    size = sum(len(name.encode()) + attribute_size(value) for name, value in item.items())
    assert size < DYNAMODB_MAX_ITEM // 2, size
    assert len(item["dv"]["B"]) == 8 * MAX_DISTINCT
    assert counter_from_item(item).measures.distinct == state.measures.distinct


def test_the_item_round_trips_every_aggregate_and_a_count_item_is_unchanged() -> None:
    for aggregate in ("min", "max", "distinct(sku)", "avg"):
        rule = value_rule(aggregate)
        state = apply(fresh(rule), rule, [ev(1, Decimal("2.50"), "a"), ev(2, Decimal(-1), "b")]).state
        assert counter_from_item(counter_item(state, NOW)) == state
    plain = CounterState(rule_id="r", user_id="u1", version=3, count=2, total=Decimal(5))
    assert set(counter_item(plain, NOW)) == {"pk", "sk", "rid", "v", "c", "s", "rd", "n", "ln", "u"}


def test_value_updates_are_rate_limited_and_the_latest_is_deferred_never_lost() -> None:
    interval = VALUE_UPDATE_SECONDS
    assert value_schedule(None, 0, NOW) == (NOW, 0), "a first value is sent at once"
    assert value_schedule("1", NOW, NOW + interval) == (NOW + interval, 0)
    assert value_schedule("1", NOW, NOW + 5) == (NOW + interval, NOW + interval), (
        "deferred to the interval's end"
    )
    assert value_schedule("2", NOW + interval, NOW + 7) == (NOW + interval, NOW + interval), (
        "replaces it there"
    )
    rule = value_rule("sum")
    first = apply(fresh(rule), rule, [ev(1, Decimal(1))])
    second = apply(first.state, rule, [ev(2, Decimal(1))], now=NOW + 60)
    assert (first.hold_until, second.hold_until) == (0, NOW + interval)
    assert [a.value for a in second.actions] == ["2"] and second.state.shown == "2"


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_nan_and_infinite_metrics_are_rejected_naming_the_field(raw: str) -> None:
    record = (
        '{"user_id":"u1","event_type":"purchase","timestamp":"2026-11-20T09:00:00Z","metrics":{"price":'
        + raw
        + "}}"
    ).encode()
    with pytest.raises(RecordRejected) as rejected:
        parse_event(record)
    assert rejected.value.field == "metrics.price"
    assert "finite" in rejected.value.reason


# ---------------------------------------------------------------- property: a plain sequential model


@dataclass(frozen=True)
class Delivery:
    start: int
    end: int
    advance: int


def model_text(aggregate: str, prices: list[Decimal | None], skus: list[str | None]) -> str | None:
    """Each aggregate written the obvious way over the events it reads, one at a time."""
    if aggregate.startswith("distinct"):
        seen = [s for s in skus if s is not None]
        n = len(set(seen))
        return None if not seen else f"{MAX_DISTINCT}+" if n > MAX_DISTINCT else str(n)
    if aggregate == "count":
        return str(len(prices)) if prices else None
    values = [p for p in prices if p is not None]
    if not values:
        return None
    total = Decimal(0)
    for v in values:
        total += v
    exact = {"sum": total, "min": min(values), "max": max(values)}
    if aggregate == "avg":
        text = format(mean(total, len(values)), "f").rstrip("0").rstrip(".")
        return "0" if text in ("", "-0") else text
    return format(exact[aggregate], "f")


prices = st.one_of(
    st.none(),
    st.decimals(min_value=-(10**6), max_value=10**6, places=2, allow_nan=False, allow_infinity=False),
)


@settings(max_examples=150, deadline=None)
@given(
    aggregate=st.sampled_from(["count", "sum", "avg", "min", "max", "distinct(sku)"]),
    events=st.lists(
        st.tuples(prices, st.one_of(st.none(), st.sampled_from("abcdef"))), min_size=1, max_size=30
    ),
    cuts=st.lists(
        st.tuples(st.integers(0, 30), st.integers(0, 30), st.integers(0, 2 * VALUE_UPDATE_SECONDS))
    ),
)
def test_aggregates_agree_with_a_sequential_model_under_batching_and_redelivery(
    aggregate: str, events: list[tuple[Decimal | None, str | None]], cuts: list[tuple[int, int, int]]
) -> None:
    rule = value_rule(aggregate, metric="na" if aggregate.startswith("distinct") else "price")
    stream = [ev(n, price, sku) for n, (price, sku) in enumerate(events)]
    # Lambda delivers from the lowest unacknowledged record: each delivery starts at or before the
    # end of what was committed (a redelivery) and the last one runs to the end of the stream.
    deliveries, committed = [], 0
    for a, b, advance in cuts:
        start = min(a, committed)
        end = max(start, min(b, len(stream)))
        deliveries.append(Delivery(start, end, advance))
        committed = max(committed, end)
    deliveries.append(Delivery(min(committed, len(stream)), len(stream), 1))
    state, now, sent_at, values = fresh(rule), NOW, [], []
    for delivery in deliveries:
        now += delivery.advance
        step = apply(state, rule, stream[delivery.start : delivery.end], now=now)
        for action in step.actions:
            assert action.value != (values[-1] if values else None), "a value is written only when it changes"
            values.append(action.value)
            sent_at.append(step.state.measures.shown_at)
        state = step.state
    matched = [(p, e) for p, e in stream if rule.matches(e)]
    expected = model_text(
        aggregate,
        [e.metrics.get("price") for _, e in matched],
        [e.attributes.get("sku") for _, e in matched],
    )
    assert state.count == len(matched)
    assert (values[-1] if values else None) == expected, "the latest value is the one the target ends with"
    assert state.shown == expected
    times = sorted(set(sent_at))
    assert all(b - a >= VALUE_UPDATE_SECONDS for a, b in itertools.pairwise(times))
