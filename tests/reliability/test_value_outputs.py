"""Scenario 18: value outputs (issue #16, item 2) under crashes and redelivery."""

from __future__ import annotations

import random
from collections.abc import Callable
from decimal import ROUND_HALF_EVEN, Decimal

import pytest

from tests.reliability.deployment import Deployment
from tests.reliability.ledger import ReliabilityLedger
from tests.reliability.reference import StreamEvent
from tests.reliability.test_redelivery import CrashPlan, _drain
from tests.reliability.workload import users

pytestmark = [pytest.mark.reliability, pytest.mark.filterwarnings("ignore:No application metrics")]
AGGREGATES = {
    "trk_v_count": "count",
    "trk_v_sum": "sum",
    "trk_v_avg": "avg",
    "trk_v_min": "min",
    "trk_v_max": "max",
    "trk_v_skus": "distinct(sku)",
}
AMOUNTS = ("0.5", "1.25", "-2.0", "4.5", "1000000.01")
"""As a Pinpoint record carries them (JSON numbers, read exactly as written)."""


def value_row(output: str, aggregate: str) -> dict[str, str]:
    return {
        "RuleType": "aggregator",
        "EventName": "buy",
        "AttributeName": "na",
        "AttributeValue": "na",
        "Operator-C": "na",
        "Target-C": "999",
        "Operator-V": "na",
        "Target-V": "999",
        "ResetWhenReachTarget": "no",
        "StartDate": "9999-99-99",
        "FinishDate": "9999-99-99",
        "MetricName": "na" if aggregate.startswith("distinct") else "amount",
        "Aggregate": aggregate,
        "Output": "value",
        "OutputName": output,
    }


def purchases(rng: random.Random, people: list[str], count: int) -> list[StreamEvent]:
    events = []
    for n in range(count):
        metrics = {} if rng.random() < 0.2 else {"amount": Decimal(rng.choice(AMOUNTS))}
        attributes = {} if rng.random() < 0.2 else {"sku": rng.choice("abcd")}
        events.append(StreamEvent(rng.choice(people), "buy", n, attributes, metrics))
    return events


def expected_values(events: list[StreamEvent]) -> dict[tuple[str, str], tuple[int, str]]:
    """(output, user) -> (events read, the value the target must end with), one event at a time."""
    out: dict[tuple[str, str], tuple[int, str]] = {}
    for user in {e.user for e in events if e.user is not None}:
        mine = [e for e in events if e.user == user]
        amounts = [e.metrics["amount"] for e in mine if "amount" in e.metrics]
        skus = [e.attributes["sku"] for e in mine if "sku" in e.attributes]
        out[("trk_v_count", user)] = (len(mine), str(len(mine)))
        if skus:
            out[("trk_v_skus", user)] = (len(skus), str(len(set(skus))))
        if amounts:
            total = sum(amounts, Decimal(0))
            mean = (total / len(amounts)).quantize(Decimal("0.000001"), ROUND_HALF_EVEN)
            shown = format(mean, "f").rstrip("0").rstrip(".")
            out[("trk_v_sum", user)] = (len(amounts), format(total, "f"))
            out[("trk_v_avg", user)] = (len(amounts), "0" if shown in ("", "-0") else shown)
            out[("trk_v_min", user)] = (len(amounts), format(min(amounts), "f"))
            out[("trk_v_max", user)] = (len(amounts), format(max(amounts), "f"))
    return out


def differences_from(stack: Deployment, expected: dict[tuple[str, str], tuple[int, str]]) -> list[str]:
    found: list[str] = []
    counters = {k: v for k, v in stack.counters().items() if k[0] in AGGREGATES}
    attributes = stack.recorder.user_attributes
    for key in sorted(set(counters) | set(expected)):
        state, want = counters.get(key), expected.get(key)
        got = None if state is None else (state.count, state.shown)
        if got != want:
            found.append(f"counter {key}: (events read, value) is {got}, expected {want}")
        output, user = key
        sent = attributes.get(user, {}).get(output)
        if want is not None and sent != want[1]:
            found.append(f"attribute {output} of {user}: the target holds {sent}, expected {want[1]}")
    pending = stack.outbox()
    if pending:
        found.append(f"{len(pending)} outbox entries never delivered: {pending[:3]}")
    return found


def test_value_outputs_under_crashes_and_redelivery_end_with_the_latest_exact_value(
    deploy: Callable[..., Deployment], ledger: ReliabilityLedger, examples: int
) -> None:
    row = ledger.scenario(
        18,
        "Value outputs under crashes",
        "Six Output = value rules (count, sum, avg, min, max, distinct) on random purchases, some "
        "without the metric or the attribute, in batches of 1-8. The process is killed after k of the "
        "n write calls (k uniform in 0..n) and Lambda retries from the checkpoint, with further crashes "
        "in a quarter of invocations; most value changes fall inside the rate limit and are held for "
        "the relay, which runs afterwards. Checked: each counter read every event once, and the target "
        "ends with exactly the value a sequential model gives, with nothing left owed.",
    )
    for run in range(examples):
        rng = random.Random(f"values-{run}")
        events = purchases(rng, users(rng, most=4), rng.randint(4, 30))
        rows = [value_row(output, aggregate) for output, aggregate in AGGREGATES.items()]
        batch_size = rng.randint(1, 8)
        with deploy(rng) as dry:
            dry.publish((), rows)
            dry.create_stream()
            dry.produce(events)
            dry.crash.arm(10**9)
            dry.mapping(dry.invoker(), batch_size=batch_size).drain()
            writes = dry.crash.writes
        with deploy(rng) as stack:
            stack.publish((), rows)
            stack.create_stream()
            stack.produce(events)
            plan = CrashPlan(stack, rng, writes)
            differences = _drain(stack, stack.mapping(stack.invoker(before=plan.arm), batch_size=batch_size))
            differences += differences_from(stack, expected_values(events))
            row.record(faults=stack.crash.crashes, differences=differences)
    assert row.differences == 0, row.verdict()
