"""Scenario 15: counters that settled are never written again, whatever arrives after them."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

import pytest

from pia_cli.lambda_events import sequence
from tests.reliability.deployment import Deployment, Produced
from tests.reliability.faults import ProcessKilled
from tests.reliability.ledger import ReliabilityLedger
from tests.reliability.reference import ReferenceModel, RuleSpec, StreamEvent

pytestmark = [pytest.mark.reliability, pytest.mark.filterwarnings("ignore:No application metrics")]
SHARD = "shardId-000000000000"
SETTLES = RuleSpec("trk_settles", "greenbutton", count=("greater", 2))
OPEN = RuleSpec("trk_open", "greenbutton", count=("greater", 100_000))
"""Never met here, so its counters take a write per batch: the crashes land among real writes."""
SPECS = (SETTLES, OPEN)


def test_events_after_a_counter_settled_cost_no_write_and_send_nothing_around_crashes(
    deploy: Callable[..., Deployment], ledger: ReliabilityLedger, examples: int
) -> None:
    row = ledger.scenario(
        15,
        "Settled counters",
        "Users cross a count rule with reset = no (the attribute is sticky, so the counter settles), "
        "then send 5-40 more events in a batch that is killed after k of its writes up to four times, "
        "delivered to warm or cold containers (a cold one learns a counter settled from its first, "
        "refused, conditional write) and then delivered once more. Checked: no settled counter is "
        "written again (no successful write of its item after it settled, its item unchanged), "
        "Pinpoint gets no further call for it, and counters and actions equal the sequential model.",
    )
    for run in range(max(3, examples // 4)):
        rng = random.Random(f"settled-{run}")
        with deploy(rng) as stack:
            stack.publish(SPECS)
            people = [f"user-{i:02d}" for i in range(rng.randint(3, 12))]
            first = [StreamEvent(user, "greenbutton", n) for n, user in enumerate(people * 3)]
            produced = [Produced(SHARD, int(sequence(i + 1)), e) for i, e in enumerate(first)]
            differences: list[str] = []
            if stack.invoke(stack.batch(produced))["batchItemFailures"]:
                differences.append("the first batch reported failures")
            stack.drain_outbox()
            settled_rule = stack.rule_ids[SETTLES.output]
            settled = {k: s for k, s in stack.counters().items() if k[0] == SETTLES.output}
            if len(settled) != len(people) or not all(s.settled for s in settled.values()) or stack.outbox():
                differences.append(f"not every counter settled: {sorted(settled)}")
            writes = sum(1 for c in stack.commits.commits if c.rule_id == settled_rule)
            sends = Counter(t for t in stack.attribute_sends.sent.elements() if t[1] == SETTLES.output)

            later = [
                StreamEvent(rng.choice(people), "greenbutton", 1000 + n) for n in range(rng.randint(5, 40))
            ]
            start = len(produced)
            extra = [Produced(SHARD, int(sequence(start + i + 1)), e) for i, e in enumerate(later)]
            batch = stack.batch(extra)
            faults = 0
            for attempt in range(5):
                if rng.random() < 0.5:
                    stack.current = None
                killed = attempt < 4 and rng.random() < 0.6
                stack.crash.arm(rng.randint(0, 6) if killed else None)
                try:
                    failures = stack.invoke(batch)["batchItemFailures"]
                except ProcessKilled:
                    faults += 1
                    continue
                finally:
                    stack.crash.arm(None)
                if not failures:
                    break
            if stack.invoke(batch)["batchItemFailures"]:
                differences.append("the last redelivery reported failures")
            stack.drain_outbox()

            after = {k: s for k, s in stack.counters().items() if k[0] == SETTLES.output}
            if after != settled:
                differences.append("a settled counter item changed")
            rewrites = sum(1 for c in stack.commits.commits if c.rule_id == settled_rule) - writes
            if rewrites:
                differences.append(f"{rewrites} writes of settled counters")
            now_sent = Counter(t for t in stack.attribute_sends.sent.elements() if t[1] == SETTLES.output)
            if now_sent != sends:
                differences.append(f"Pinpoint was called again for a settled counter: {now_sent - sends}")
            model = ReferenceModel()
            for p in (*produced, *extra):
                model.feed(SPECS, p.lane, p.sequence, p.event)
            differences += stack.compare(model, SPECS).differences
            row.record(faults=faults, differences=differences)
    assert row.differences == 0, row.verdict()
