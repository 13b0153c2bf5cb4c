"""Scenario 11: a hypothesis state machine mixing every fault, checked against the sequential model.

The machine produces events to a two-shard stream (a user always hashes to the same shard, as a
partition key does), delivers them through the event source mapping with random process kills
between writes, DynamoDB and Pinpoint throttling, redeliveries of batches already processed, relay
runs (some killed), and publishes new rulesets. After catching up (a fault-free drain and relay),
every counter and every action must equal the sequential model.

Rule changes are published only when every record is processed, and a processed batch is only
redelivered while the ruleset it was counted under is still live: a record's rules are then the
rules live when it was produced, which is what makes the model exact. (A redelivery of records from
before a rule was published would count them for that rule: at-least-once delivery and a 60 s
ruleset cache make the exact switch-over point of a rule change unobservable, by design.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.reliability.deployment import Comparison, Deployment, Produced
from tests.reliability.faults import ProcessKilled
from tests.reliability.ledger import ReliabilityLedger
from tests.reliability.reference import ReferenceModel, RuleSpec, StreamEvent
from tests.reliability.workload import CATALOG

pytestmark = [pytest.mark.reliability, pytest.mark.filterwarnings("ignore:No application metrics")]

RULES = (
    *CATALOG,
    RuleSpec("trk_course_x2", "course", count=("equal", 2), reset=True, attribute=("level", "1")),
    RuleSpec("trk_big_spender", "buy", total=("greater", "12"), metric="amount"),
    RuleSpec("trk_not_one", "click", count=("not_equal", 1), total=("less_or_equal", "0")),
)
USERS = tuple(f"user-{i}" for i in range(4))
EVENT = st.tuples(
    st.sampled_from((*USERS, None)),
    st.sampled_from(("click", "course", "buy", "view", "_session.start", "trk_clicker")),
    st.sampled_from(("red", "blue", "1", "2")),
    st.sampled_from(("0.5", "1.25", "4", "7.5")),
    st.booleans(),
)
PROFILES = {
    "storm": (0.5, True, True),
    "crashes": (0.5, False, False),
    "throttling": (0.0, True, True),
    "calm": (0.0, False, False),
}
"""Fault mixes for a delivery: (share of invocations killed, DynamoDB throttled, Pinpoint throttled).
The faultiest comes first: it is what hypothesis tries first and shrinks towards."""
STORE_OPERATIONS = frozenset({"PutItem", "BatchWriteItem", "BatchExecuteStatement", "Query"})


def _event(n: int, user: str | None, kind: str, tag: str, amount: str, extra: bool) -> StreamEvent:
    attributes: dict[str, str] = {}
    metrics: dict[str, Decimal] = {}
    if kind == "click":
        attributes["color"] = tag
    elif kind == "course":
        attributes["level"] = tag
    elif kind == "buy":
        metrics["amount"] = Decimal(amount)
        if extra:
            metrics["items"] = Decimal(2)
    elif kind == "view":
        metrics["seconds"] = Decimal(amount)
        if extra:
            metrics["scrolls"] = Decimal(1)
    return StreamEvent(user, kind, n, attributes, metrics)


def test_random_faults_never_change_a_count_or_an_action(
    deploy: Callable[..., Deployment],
    ledger: ReliabilityLedger,
    examples: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    row = ledger.scenario(
        11,
        "Randomized stateful test",
        "A hypothesis RuleBasedStateMachine (an initial batch of events, then up to 12 steps) produces events to two shards, "
        "delivers them through the event source mapping with processes killed at random writes (up to "
        "half of the invocations), a third of DynamoDB and Pinpoint calls throttled, already-processed "
        "batches redelivered to warm or cold containers, relay runs (some killed), "
        "and new ruleset versions published (the aggregator's ruleset cache TTL is 0). "
        "Invariant, after catching up, at every check and at the end: every counter and every action "
        "equals the sequential model.",
    )

    class Machine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.stack: Deployment | None = None

        @initialize(
            seed=st.integers(0, 2**32 - 1),
            live=st.sets(st.sampled_from(range(len(RULES))), min_size=1),
            chunk=st.sampled_from((5, 9, 100)),
            first=st.lists(EVENT, min_size=4, max_size=20),
        )
        def start(self, seed: int, live: set[int], chunk: int, first: list[Any]) -> None:
            self.rng = random.Random(seed)
            self.stack = deploy(self.rng)
            self.stack.throttle.operations = STORE_OPERATIONS
            self.stack.create_stream(shards=2)
            self.stack.refuse_pinpoint(0.0)
            self.crash_rate = 0.0
            self.ever: dict[str, RuleSpec] = {}
            self._publish(live)
            self.model = ReferenceModel()
            self.produced: list[Produced] = []
            self.delivered = 0
            self.redeliverable: list[Produced] = []
            self.redeliveries = 0
            self.steps: list[str] = []
            self.runner = self.stack.mapping(self.stack.invoker(before=self._arm), batch_size=10)
            self.produce(first)
            self.deliver([], batch=self.rng.randint(1, 15), profile="storm")

        def _publish(self, live: set[int]) -> None:
            assert self.stack is not None
            specs = tuple(RULES[i] for i in sorted(live))
            self.stack.publish(specs)
            self.ever.update({s.output: s for s in specs})
            self.redeliverable = []

        def _step(self, name: str) -> None:
            self.steps.append(name)

        def _arm(self) -> None:
            assert self.stack is not None
            crash = self.rng.random() < self.crash_rate
            self.stack.crash.arm(self.rng.randint(0, 5) if crash else None)

        @rule(events=st.lists(EVENT, min_size=1, max_size=12))
        def produce(self, events: list[tuple[str | None, str, str, str, bool]]) -> None:
            assert self.stack is not None
            self._step("produce")
            made = [_event(len(self.produced) + i, *e) for i, e in enumerate(events)]
            records = self.stack.produce(made, shard_of=lambda e: USERS.index(e.user) if e.user else 0)
            for record in records:
                self.model.feed(self.stack.live, record.lane, record.sequence, record.event)
            self.produced += records

        @rule(
            events=st.lists(EVENT, max_size=12),
            batch=st.integers(1, 15),
            profile=st.sampled_from(tuple(PROFILES)),
        )
        def deliver(self, events: list[Any], batch: int, profile: str) -> None:
            """New events (if any), then the stream drained through Lambda's retries."""
            assert self.stack is not None
            if events:
                self.produce(events)
            crashes, throttle, refuse = PROFILES[profile]
            self._step("deliver")
            self.crash_rate = crashes
            self.stack.throttle.rate = 1 / 3 if throttle else 0.0
            self.stack.refuse_pinpoint(1 / 3 if refuse else 0.0)
            self.runner.settings = dataclasses.replace(self.runner.settings, batch_size=batch)
            stats = self.runner.drain()
            assert not stats.records_discarded, "unbounded retries never give a record up"
            self.crash_rate = 0.0
            self.stack.crash.arm(None)
            self.stack.throttle.rate = 0.0
            self.stack.refuse_pinpoint(0.0)
            self.redeliverable += self.produced[self.delivered :]
            self.delivered = len(self.produced)

        @precondition(lambda self: bool(getattr(self, "redeliverable", None)))
        @rule(data=st.data(), cold=st.sampled_from((True, False)), crash=st.sampled_from((True, False)))
        def redeliver(self, data: st.DataObject, cold: bool, crash: bool) -> None:
            """Kinesis at-least-once: a batch already processed arrives again."""
            assert self.stack is not None
            self._step("Redeliver")
            lane = data.draw(st.sampled_from(sorted({p.lane for p in self.redeliverable})))
            records = [p for p in self.redeliverable if p.lane == lane]
            start = data.draw(st.integers(0, len(records) - 1))
            batch = records[start : start + data.draw(st.integers(1, 12))]
            if cold:
                self.stack.current = None
            self.stack.crash.arm(self.rng.randint(0, 4) if crash else None)
            self.redeliveries += 1
            with contextlib.suppress(ProcessKilled):
                self.stack.invoke(self.stack.batch(batch))
            self.stack.crash.arm(None)

        @rule(refuse=st.sampled_from((True, False)), crash=st.sampled_from((True, False)))
        def relay(self, refuse: bool, crash: bool) -> None:
            assert self.stack is not None
            self._step("Relay")
            self.stack.refuse_pinpoint(1 / 3 if refuse else 0.0)
            self.stack.crash.arm(self.rng.randint(0, 4) if crash else None)
            self.stack.run_relay()
            self.stack.crash.arm(None)
            self.stack.refuse_pinpoint(0.0)

        @precondition(lambda self: getattr(self, "delivered", -1) == len(getattr(self, "produced", ())))
        @rule(live=st.sets(st.sampled_from(range(len(RULES))), min_size=1))
        def publish(self, live: set[int]) -> None:
            self._step("Publish")
            self._publish(live)

        @rule()
        def verify_after_catching_up(self) -> None:
            self._step("Verify")
            differences = self._catch_up().differences
            assert not differences, differences[:5]

        def _catch_up(self) -> Comparison:
            assert self.stack is not None
            self.deliver([], batch=25, profile="calm")
            self.stack.drain_outbox()
            return self.stack.compare(self.model, tuple(self.ever.values()))

        def teardown(self) -> None:
            if self.stack is None:
                return
            try:
                outcome = self._catch_up()
                differences = outcome.differences
                stack = self.stack
                faults = (
                    stack.crash.crashes
                    + sum(stack.throttle.injected.values())
                    + stack.pinpoint_refused
                    + self.redeliveries
                )
                row.record(faults=faults, differences=differences, resends=outcome.resends)
                assert not differences, differences[:5]
            finally:
                self.stack.close()

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=12,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            print_blob=True,
        ),
    )
    assert row.runs >= examples and row.differences == 0, row.verdict()
