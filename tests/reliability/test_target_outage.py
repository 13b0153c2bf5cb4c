"""Scenario 8: Pinpoint fails after the counter committed; the action goes out later, from the item."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from tests.reliability.deployment import Deployment
from tests.reliability.ledger import ReliabilityLedger
from tests.reliability.workload import CATALOG, random_events, reference_for, users

pytestmark = [pytest.mark.reliability, pytest.mark.filterwarnings("ignore:No application metrics")]
OUTAGES: dict[str, Callable[[str], bool]] = {
    "every call": lambda operation: True,
    "PutEvents": lambda operation: operation == "PutEvents",
    "UpdateEndpointsBatch": lambda operation: operation == "UpdateEndpointsBatch",
}


class Outage:
    """Which Pinpoint calls fail: one operation, every call, a random half, or (recovering) a fifth."""

    def __init__(self, kind: str, coin: random.Random) -> None:
        self.kind, self.coin = kind, coin
        self.refused = 0

    def down(self, operation: str) -> bool:
        if self.kind in OUTAGES:
            refused = bool(OUTAGES[self.kind](operation))
        else:
            refused = self.coin.random() < (0.5 if self.kind == "half" else 0.2)
        self.refused += refused
        return refused


def test_actions_refused_after_commit_are_delivered_later_without_recounting(
    deploy: Callable[..., Deployment], ledger: ReliabilityLedger, examples: int
) -> None:
    row = ledger.scenario(
        8,
        "Pinpoint fails after the counter committed",
        "While the stream drains, Pinpoint refuses every call, only PutEvents, only UpdateEndpointsBatch, "
        "or a random half (TooManyRequestsException, after the target's own retries). Then the relay "
        "runs every ten minutes while Pinpoint recovers; a third of relay runs are killed at a random "
        "write. Checked: counters were exact before any action went out and the relay changed none of "
        "their counts, sums or marks (it only claims and clears what they owe), every crossing reached "
        "Pinpoint exactly once (a same-id resend only when a relay died between Pinpoint accepting and "
        "the clear), and no item still owes an action.",
    )
    for run in range(examples):
        rng = random.Random(f"outage-{run}")
        with deploy(rng) as stack:
            stack.publish(CATALOG)
            stack.create_stream()
            produced = stack.produce(random_events(rng, users(rng, most=8), rng.randint(8, 30)))
            outage = Outage(rng.choice([*OUTAGES, "half"]), random.Random(rng.random()))
            stack.recorder.fail_next = 10**9
            stack.recorder.failure_filter = outage.down
            stats = stack.mapping(stack.invoker(), batch_size=rng.randint(5, 40)).drain()
            model = reference_for((p.lane, p.sequence, p.event) for p in produced)
            differences = (
                [f"{stats.records_discarded} records given up on"] if stats.records_discarded else []
            )
            committed = stack.counters()
            expected = {k: (t.count, t.total, t.ready, t.fired) for k, t in model.tallies.items()}
            if {k: (s.count, s.total, s.ready, s.fired) for k, s in committed.items()} != expected:
                differences.append("counters were not exact before the actions went out")
            deferred, kind = len(stack.outbox()), outage.kind
            relay_runs = 0
            while stack.outbox() and relay_runs < 30:
                relay_runs += 1
                if relay_runs > 2:
                    outage.kind = "recovering"
                stack.crash.arm(rng.randint(0, 6) if rng.random() < 1 / 3 else None)
                stack.run_relay()
                stack.crash.arm(None)
            counted = {k: (s.count, s.total, s.ready, s.fired, s.lanes) for k, s in stack.counters().items()}
            if counted != {k: (s.count, s.total, s.ready, s.fired, s.lanes) for k, s in committed.items()}:
                differences.append("the relay changed a count (it may only clear what a counter owes)")
            outcome = stack.compare(model, CATALOG)
            differences += outcome.differences
            resent = outcome.resends
            if deferred == 0 and kind == "every call" and any(t.fired for t in model.tallies.values()):
                differences.append("an outage of every call deferred nothing")
            row.record(faults=outage.refused + stack.crash.crashes, differences=differences, resends=resent)
    assert row.differences == 0, row.verdict()
