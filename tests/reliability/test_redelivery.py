"""Scenarios 1, 2 and 4: Lambda delivering records again, whole or from a checkpoint."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from pia_cli.lambda_events import sequence
from pia_cli.recorder import error_response
from tests.reliability.deployment import Deployment, Produced
from tests.reliability.ledger import ReliabilityLedger
from tests.reliability.reference import RuleSpec, StreamEvent
from tests.reliability.workload import CATALOG, random_events, reference_for, users

pytestmark = [pytest.mark.reliability, pytest.mark.filterwarnings("ignore:No application metrics")]
SHARD = "shardId-000000000000"


def test_same_batch_delivered_twice_counts_once_and_acts_once(
    deploy: Callable[..., Deployment], ledger: ReliabilityLedger, examples: int
) -> None:
    row = ledger.scenario(
        1,
        "Same batch twice",
        "A batch is processed, then delivered again 1-3 times, to the warm container or to a cold one "
        "(empty counter cache, so every write conflicts and is recomputed from the stored item). "
        "Checked: no counter item changes (not even its version), Pinpoint receives no further call, "
        "and counters and actions equal the sequential model.",
    )
    for run in range(examples):
        rng = random.Random(f"same-batch-{run}")
        with deploy(rng) as stack:
            stack.publish(CATALOG)
            events = random_events(rng, users(rng), rng.randint(5, 40))
            produced = [Produced(SHARD, int(sequence(i + 1)), e) for i, e in enumerate(events)]
            batch = stack.batch(produced)
            differences: list[str] = []
            if stack.invoke(batch)["batchItemFailures"]:
                differences.append("first delivery reported failures")
            counters = stack.counters()
            calls, fired = Counter(stack.recorder.calls), stack.fired_events()
            redeliveries = rng.randint(1, 3)
            for _ in range(redeliveries):
                if rng.random() < 0.5:
                    stack.current = None
                if stack.invoke(batch)["batchItemFailures"]:
                    differences.append("redelivery reported failures")
            if stack.counters() != counters:
                differences.append("a redelivery changed a counter item")
            if Counter(stack.recorder.calls) != calls or stack.fired_events() != fired:
                differences.append(f"a redelivery called Pinpoint again: {calls} -> {stack.recorder.calls}")
            model = reference_for((p.lane, p.sequence, p.event) for p in produced)
            differences += stack.compare(model, CATALOG).differences
            row.record(faults=redeliveries, differences=differences)
    assert row.differences == 0, row.verdict()


def _drain(stack: Deployment, runner: Any) -> list[str]:
    stats = runner.drain()
    stack.crash.arm(None)
    problems = [f"{stats.records_discarded} records given up on"] if stats.records_discarded else []
    stack.drain_outbox()
    return problems


def _writes_of_a_clean_delivery(
    stack: Deployment, events: list[StreamEvent], catalog: Sequence[RuleSpec] = CATALOG
) -> int:
    stack.publish(catalog)
    stack.create_stream()
    stack.produce(events)
    stack.crash.arm(10**9)
    stack.mapping(stack.invoker(), batch_size=len(events)).drain()
    return stack.crash.writes


class CrashPlan:
    """The first invocation dies after k of n writes (k uniform in 0..n); each retry dies too, at a
    random write, one time in four."""

    def __init__(self, stack: Deployment, rng: random.Random, writes: int) -> None:
        self.stack, self.rng, self.writes = stack, rng, writes
        self.first = True

    def arm(self) -> None:
        if self.first:
            self.first = False
            self.stack.crash.arm(self.rng.randint(0, self.writes))
        else:
            self.stack.crash.arm(self.rng.randint(0, self.writes) if self.rng.random() < 0.25 else None)


def test_crash_after_k_of_n_writes_then_redelivery_counts_every_record_once(
    deploy: Callable[..., Deployment],
    ledger: ReliabilityLedger,
    examples: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    row = ledger.scenario(
        2,
        "Crash mid-batch",
        "The process is killed after k of the batch's n write calls (conditional Puts of counters with "
        "what they owe, and of their clears; Pinpoint calls; k uniform in 0..n, n measured on an "
        "identical fault-free stack), so crashes fall between any two of them. Lambda "
        "retries from the checkpoint (bisecting, as the template configures), where further crashes hit "
        "a quarter of invocations; the relay runs afterwards. Checked: every record counted once, every "
        "crossing delivered once.",
    )

    for run in range(examples):
        rng = random.Random(f"crash-{run}")
        events = random_events(rng, users(rng, most=8), rng.randint(6, 30))
        with deploy(rng) as dry:
            writes = _writes_of_a_clean_delivery(dry, events)
        with deploy(rng) as stack:
            stack.publish(CATALOG)
            stack.create_stream()
            produced = stack.produce(events)
            plan = CrashPlan(stack, rng, writes)
            differences = _drain(stack, stack.mapping(stack.invoker(before=plan.arm), batch_size=len(events)))
            outcome = stack.compare(reference_for((p.lane, p.sequence, p.event) for p in produced), CATALOG)
            differences += outcome.differences
            row.record(faults=stack.crash.crashes, differences=differences, resends=outcome.resends)
    assert row.differences == 0, row.verdict()


class TransientFailure:
    """One record fails on the first invocation only: in its own handler, or because the transaction
    holding its user's counters is throttled until the store gives up."""

    def __init__(self, stack: Deployment, victim: Produced) -> None:
        self.victim = victim
        self.invocations = 0
        self.reported: list[list[str]] = []
        self._invoke = stack.invoker(before=self._count)

    def _count(self) -> None:
        self.invocations += 1

    def wrap(self, decode: Callable[..., Any]) -> Callable[..., Any]:
        def flaky(record: Any, *settings: Any) -> Any:
            if self.invocations == 1 and int(record.kinesis.sequence_number) == self.victim.sequence:
                raise ConnectionError("transient failure while decoding this record")
            return decode(record, *settings)

        return flaky

    def refuse(self, params: dict[str, Any], **_: Any) -> Any:
        if self.invocations == 1 and f'"{self.victim.event.user}"'.encode() in params["body"]:
            return error_response(400, "ProvisionedThroughputExceededException", "hot partition")
        return None

    def invoke(self, event: dict[str, Any]) -> Any:
        response = self._invoke(event)
        self.reported.append([f["itemIdentifier"] for f in response["batchItemFailures"]])
        return response


def test_transient_failure_of_one_record_keeps_order_and_exact_counts(
    deploy: Callable[..., Deployment],
    ledger: ReliabilityLedger,
    examples: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    row = ledger.scenario(
        4,
        "Partial-batch failure with redelivery",
        "One record fails transiently while a later record of the same user sits in the same batch: "
        "either the record itself fails (its handler raises once) or the conditional Put of that user's "
        "counter is throttled until the store gives up. The batch reports batchItemFailures and Lambda "
        "redelivers from the lowest one. Checked: the failure names that record (or an earlier one), "
        "and counters and actions equal the sequential model.",
    )

    for run in range(examples):
        rng = random.Random(f"partial-{run}")
        with deploy(rng) as stack, monkeypatch.context() as patch:
            stack.publish(CATALOG)
            stack.create_stream()
            people = users(rng, most=8)
            events = random_events(rng, people, rng.randint(10, 40))
            produced = stack.produce(events)
            counted = [i for i, p in enumerate(produced) if any(s.matches(p.event) for s in CATALOG)]
            later_same_user = [
                i
                for i in counted
                if any(produced[j].event.user == produced[i].event.user for j in counted if j > i)
            ]
            if not later_same_user:
                continue
            victim = produced[rng.choice(later_same_user)]
            failure = TransientFailure(stack, victim)
            if rng.random() < 0.5:
                patch.setattr(stack.app, "decode_record", failure.wrap(stack.app.decode_record))
            else:
                stack.extra_hooks.append(("before-call.dynamodb.PutItem", failure.refuse))
            differences = _drain(stack, stack.mapping(failure.invoke, batch_size=len(events)))
            failures = failure.reported
            first = failures[0] if failures else []
            if not first or min(int(s) for s in first) > victim.sequence:
                differences.append(f"the failed record {victim.sequence} was not reported: {first}")
            model = reference_for((p.lane, p.sequence, p.event) for p in produced)
            differences += stack.compare(model, CATALOG).differences
            row.record(faults=1, differences=differences)
    assert row.differences == 0, row.verdict()
