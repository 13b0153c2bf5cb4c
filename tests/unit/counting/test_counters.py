"""Aggregate semantics: each line of issue #2's "Aggregate semantics" pinned by a test."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pia.core.actions import READY, ActionKind
from pia.core.events import Event
from pia.counting.counters import (
    CounterState,
    LaneMark,
    Position,
    apply_events,
    group_by_counter,
    prune_lanes,
)
from pia.rules.table import parse_rules
from tests.conftest import rule_row

T0 = datetime(2026, 11, 20, 9, tzinfo=UTC)
NOW = int(T0.timestamp())


def rule(*cells: str, **extra: str):  # type: ignore[no-untyped-def]
    parsed = parse_rules([(2, rule_row(*cells, **extra))])
    assert not parsed.errors, parsed.errors
    return parsed.rules[0]


def count_rule(op: str, target: str, reset: str = "no"):  # type: ignore[no-untyped-def]
    return rule(
        "aggregator", "greenbutton", "na", "999", op, target, "na", "999", reset, "9999-99-99", "9999-99-99"
    )


def ev(
    n: int,
    user: str = "u1",
    event_type: str = "greenbutton",
    metrics: dict[str, Decimal] | None = None,
    attributes: dict[str, str] | None = None,
    endpoint: str | None = "ep1",
) -> tuple[Position, Event]:
    return (
        Position("shardId-000000000000", 1000 + n),
        Event(
            user_id=user,
            event_type=event_type,
            timestamp=T0 + timedelta(seconds=n),
            attributes=attributes or {},
            metrics=metrics if metrics is not None else {"clicks": Decimal(1)},
            endpoint_id=endpoint,
        ),
    )


def apply(state: CounterState, r, events):  # type: ignore[no-untyped-def]
    return apply_events(state, r, events, now=NOW, lane_retention_seconds=90_000)


def fresh(r) -> CounterState:  # type: ignore[no-untyped-def]
    return CounterState(rule_id=r.rule_id, user_id="u1")


def test_reset_no_sets_ready_once_at_the_crossing_and_then_settles() -> None:
    r = count_rule("greater", "5")
    step = apply(fresh(r), r, [ev(i) for i in range(10)])
    assert [a.kind for a in step.actions] == [ActionKind.SET_ATTRIBUTE]
    assert step.actions[0].value == READY
    assert step.actions[0].output_name == "trk_greenbutton"
    assert step.actions[0].count == 6
    assert step.state.count == 6 and step.state.ready and step.state.settled
    assert (step.applied, step.settled) == (6, 4), "events after the sticky ready change nothing"
    later = apply(step.state, r, [ev(i) for i in range(10, 20)])
    assert later.actions == () and not later.changed, "a settled counter needs no write"
    assert later.settled == 10 and later.state == step.state


@pytest.mark.parametrize(
    ("op", "target", "events", "settled"),
    [
        ("<", "3", 3, True),
        ("<=", "3", 4, True),
        ("=", "3", 4, True),
        (">", "3", 9, False),
        ("!=", "3", 9, False),
    ],
)
def test_a_count_condition_that_can_never_hold_again_settles(
    op: str, target: str, events: int, settled: bool
) -> None:
    r = rule("aggregator", "greenbutton", "na", "na", op, target, ">", "1000", "yes", "", "")
    step = apply(fresh(r), r, [ev(i) for i in range(events)])
    assert step.state.settled is settled
    assert step.actions == ()


def test_reset_yes_fires_on_every_crossing_inside_one_batch_and_zeroes() -> None:
    r = count_rule("greater", "2", reset="yes")
    step = apply(fresh(r), r, [ev(i) for i in range(10)])
    assert [a.kind for a in step.actions] == [ActionKind.FIRE_EVENT] * 3
    assert [a.count for a in step.actions] == [3, 3, 3]
    assert step.state.count == 1 and step.state.total == 0, "a count-only rule keeps no sum"
    assert len({a.action_id for a in step.actions}) == 3


def test_equal_target_is_caught_when_crossed_inside_a_batch() -> None:
    r = count_rule("equal", "3")
    step = apply(fresh(r), r, [ev(i) for i in range(7)])
    assert len(step.actions) == 1 and step.actions[0].count == 3
    assert step.state.count == 3 and step.settled == 4, "ready is sticky: the counter settled at 3"


def test_equal_with_reset_fires_each_time_the_count_returns_to_target() -> None:
    r = count_rule("=", "2", reset="yes")
    step = apply(fresh(r), r, [ev(i) for i in range(7)])
    assert len(step.actions) == 3
    assert step.state.count == 1


def test_sum_is_exact_decimal_never_truncated() -> None:
    r = rule("aggregator", "purchase", "na", "na", "na", "999", "greater", "0.25", "no", "", "")
    events = [ev(i, event_type="purchase", metrics={"amount": Decimal("0.1")}) for i in range(3)]
    step = apply(fresh(r), r, events)
    assert step.state.total == Decimal("0.3")
    assert len(step.actions) == 1 and step.actions[0].total == Decimal("0.3")


def test_count_and_sum_must_both_hold() -> None:
    r = rule("aggregator", "purchase", "na", "na", ">=", "2", ">", "100", "no", "", "")
    events = [
        ev(i, event_type="purchase", metrics={"amount": Decimal(a)}) for i, a in enumerate(["150", "1", "1"])
    ]
    step = apply(fresh(r), r, events)
    assert [a.count for a in step.actions] == [2]


def test_named_metric_is_summed_and_ambiguous_metrics_add_nothing() -> None:
    named = rule("aggregator", "purchase", "na", "na", "na", "", ">", "10", "no", "", "", MetricName="amount")
    unnamed = rule("aggregator", "purchase", "na", "na", "na", "", ">", "10", "no", "", "")
    events = [
        ev(1, event_type="purchase", metrics={"amount": Decimal(7), "items": Decimal(3)}),
        ev(2, event_type="purchase", metrics={"amount": Decimal(7), "items": Decimal(3)}),
    ]
    assert apply(fresh(named), named, events).state.total == 14
    step = apply(fresh(unnamed), unnamed, events)
    assert step.state.total == 0 and step.state.count == 2 and step.ambiguous_metric == 2


def test_redelivered_positions_are_ignored() -> None:
    r = count_rule("greater", "2", reset="yes")
    first = apply(fresh(r), r, [ev(i) for i in range(5)])
    again = apply(first.state, r, [ev(i) for i in range(8)])
    assert again.duplicates == 5 and again.applied == 3
    assert again.state.count == first.state.count + 3 - 3


def test_endpoints_are_remembered_up_to_pinpoints_limit_of_fifteen() -> None:
    r = count_rule("greater", "100")
    step = apply(fresh(r), r, [ev(i, endpoint=f"ep{i % 20}") for i in range(40)])
    assert len(step.state.endpoints) == 15
    assert step.state.endpoints[-1] == "ep19"


def test_idle_lanes_are_pruned_after_the_redelivery_horizon() -> None:
    lanes = {"old": LaneMark(5, NOW - 100_000), "new": LaneMark(9, NOW - 10)}
    assert set(prune_lanes(lanes, NOW, 90_000)) == {"new"}


def test_attribute_filter_and_event_name_route_events_to_rules() -> None:
    filtered = rule("aggregator", "purchase", "category", "shoes", ">", "0", "na", "", "no", "", "")
    other = count_rule("greater", "0")
    records = [
        ev(1, event_type="purchase", attributes={"category": "shoes"}),
        ev(2, event_type="purchase", attributes={"category": "Shoes"}),
        ev(3),
    ]
    runs = group_by_counter(records, {"purchase": [filtered], "greenbutton": [other]})
    assert [len(events) for _, events in runs.values()] == [1, 1]
    assert filtered.output_name == "trk_purchase_shoes"


@settings(max_examples=150, deadline=None)
@given(
    op=st.sampled_from([">", ">=", "<", "<=", "=", "!="]),
    target=st.integers(0, 6),
    reset=st.sampled_from(["yes", "no"]),
    metrics=st.lists(st.decimals(min_value=-5, max_value=5, places=2), min_size=1, max_size=25),
    cuts=st.lists(st.integers(0, 25), max_size=4),
)
def test_coalesced_batches_equal_one_event_at_a_time(op, target, reset, metrics, cuts) -> None:  # type: ignore[no-untyped-def]
    r = rule("aggregator", "greenbutton", "na", "na", op, str(target), ">", "1.5", reset, "", "")
    events = [ev(i, metrics={"clicks": m}) for i, m in enumerate(metrics)]
    one_by_one = fresh(r)
    sequential_actions = []
    for e in events:
        step = apply(one_by_one, r, [e])
        one_by_one = step.state
        sequential_actions.extend(step.actions)
    bounds = sorted({0, len(events), *(c for c in cuts if c <= len(events))})
    batched = fresh(r)
    batched_actions = []
    for lo, hi in itertools.pairwise(bounds):
        step = apply(batched, r, events[lo:hi])
        batched = step.state
        batched_actions.extend(step.actions)
    assert (batched.count, batched.total, batched.ready) == (
        one_by_one.count,
        one_by_one.total,
        one_by_one.ready,
    )
    assert [a.action_id for a in batched_actions] == [a.action_id for a in sequential_actions]


def test_a_producer_duplicate_with_the_same_event_id_counts_once() -> None:
    r = count_rule("greater", "1", reset="yes")
    first = replace(ev(1)[1], event_id="evt-1")
    again = replace(ev(2)[1], event_id="evt-1")
    other = replace(ev(3)[1], event_id="evt-2")
    step = apply(fresh(r), r, [(ev(1)[0], first), (ev(2)[0], again), (ev(3)[0], other)])
    assert (step.applied, step.duplicates) == (2, 1)
    assert len(step.actions) == 1, "the second copy must not complete a crossing"
    later = apply(step.state, r, [(ev(9)[0], replace(first, timestamp=first.timestamp))])
    assert later.duplicates == 1 and later.state.count == step.state.count


def test_events_without_an_id_are_never_merged() -> None:
    r = count_rule("greater", "100")
    step = apply(fresh(r), r, [ev(1), ev(2)])
    assert step.applied == 2 and step.state.recent_ids == ()


def test_the_event_id_ring_is_bounded() -> None:
    r = count_rule("greater", "1000")
    events = [(ev(i)[0], replace(ev(i)[1], event_id=f"id-{i}")) for i in range(100)]
    step = apply(fresh(r), r, events)
    assert len(step.state.recent_ids) == 32 and step.state.count == 100
