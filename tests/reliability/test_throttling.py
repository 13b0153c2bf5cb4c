"""Scenario 6: DynamoDB and Pinpoint refusing a third of all calls."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

import pytest

from tests.reliability.deployment import Deployment
from tests.reliability.ledger import ReliabilityLedger
from tests.reliability.workload import CATALOG, random_events, reference_for, users

pytestmark = [pytest.mark.reliability, pytest.mark.filterwarnings("ignore:No application metrics")]


def test_throttling_storm_loses_nothing_and_doubles_nothing(
    deploy: Callable[..., Deployment],
    ledger: ReliabilityLedger,
    examples: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    row = ledger.scenario(
        6,
        "Throttling storms",
        "A third of DynamoDB calls (conditional Puts of state items, their clears and the relay's "
        "claims, parking, queries, ruleset reads; seeded) are refused before reaching the table as "
        "ProvisionedThroughputExceededException, and Pinpoint answers TooManyRequestsException "
        "to a third of its calls. The stream is drained through Lambda's retries, the relay runs twice "
        "in the storm, then (OUTBOX_MIN_AGE_SECONDS=0) once the storm is over. Checked: counters and "
        "actions equal the sequential model and no item still owes an action.",
    )

    injected: Counter[str] = Counter()
    for run in range(examples):
        rng = random.Random(f"throttle-{run}")
        with deploy(rng) as stack:
            stack.publish(CATALOG)
            stack.create_stream()
            produced = stack.produce(random_events(rng, users(rng, most=8), rng.randint(8, 40)))
            stack.throttle.rate = 1 / 3
            stack.refuse_pinpoint(1 / 3)
            stats = stack.mapping(stack.invoker(), batch_size=rng.randint(5, 30)).drain()
            stack.run_relay()
            stack.run_relay()
            stack.throttle.rate = 0.0
            stack.refuse_pinpoint(0.0)
            stack.drain_outbox()
            differences = (
                [f"{stats.records_discarded} records given up on"] if stats.records_discarded else []
            )
            model = reference_for((p.lane, p.sequence, p.event) for p in produced)
            differences += stack.compare(model, CATALOG).differences
            injected.update(stack.throttle.injected)
            injected["Pinpoint"] += stack.pinpoint_refused
            faults = sum(stack.throttle.injected.values()) + stack.pinpoint_refused
            row.record(faults=faults, differences=differences)
    assert row.differences == 0, row.verdict()
    assert all(injected[name] for name in ("PutItem", "Pinpoint")), injected
