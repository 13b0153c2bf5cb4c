"""Scenario 3: the server applied a write, the client timed out, and botocore sent it again."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

import pytest

from tests.reliability.deployment import Deployment
from tests.reliability.ledger import ReliabilityLedger
from tests.reliability.workload import CATALOG, random_events, reference_for, users

pytestmark = [pytest.mark.reliability, pytest.mark.filterwarnings("ignore:No application metrics")]


def test_sdk_retry_of_a_write_that_landed_never_double_counts(
    deploy: Callable[..., Deployment],
    ledger: ReliabilityLedger,
    examples: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    row = ledger.scenario(
        3,
        "SDK retry after a successful write",
        "A third of DynamoDB writes (conditional Puts of counters, with what they owe, and of their "
        "clears and claims; parked actions) are applied by moto, proven stored by reading the table with "
        "an untouched client, and then answered with a read timeout, so botocore's own retry sends the "
        "same request again. A resent Put is re-applied and fails its version condition; the item it "
        "gets back is its own write, whose lane marks show it applied. Checked: counters and actions "
        "equal the sequential model.",
    )

    injected: Counter[str] = Counter()
    resent: Counter[str] = Counter()
    for run in range(examples):
        rng = random.Random(f"sdk-retry-{run}")
        with deploy(rng) as stack:
            stack.publish(CATALOG)
            stack.create_stream()
            produced = stack.produce(random_events(rng, users(rng, most=8), rng.randint(8, 35)))
            stack.timeout.rate = 1 / 3
            stats = stack.mapping(stack.invoker(), batch_size=rng.randint(5, 25)).drain()
            stack.drain_outbox()
            stack.timeout.rate = 0.0
            differences = (
                [f"{stats.records_discarded} records given up on"] if stats.records_discarded else []
            )
            if stack.timeout.unproven:
                differences.append(f"{stack.timeout.unproven} writes were not stored before the timeout")
            model = reference_for((p.lane, p.sequence, p.event) for p in produced)
            differences += stack.compare(model, CATALOG).differences
            injected.update(stack.timeout.injected)
            resent.update(stack.timeout.resent)
            row.record(faults=sum(stack.timeout.injected.values()), differences=differences)
    assert row.differences == 0, row.verdict()
    assert injected["PutItem"], injected
    assert resent["reapplied"], resent
