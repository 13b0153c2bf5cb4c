"""Scenario 7: two lanes (two shards, or one shard with ParallelizationFactor 2) update the same users.

Which event of a sum rule crosses its target depends on the order two concurrent lanes commit in,
so the strongest true statement is about the order the engine *actually* committed: read every
accepted counter version off the wire, rebuild from its lane marks which events each version
absorbed, and require that

- the versions of each counter are exactly 1..n, each committed once (no lost update);
- the absorbed events are exactly the produced ones, each once, each lane in stream order;
- the final counter equals the sequential model fed in that commit order;
- the Pinpoint events are exactly that model's crossings, each delivered once;
- and, independently of any order, a count rule's totals add up (count + target x fired = events).
"""

from __future__ import annotations

import functools
import random
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest

from pia_cli.lambda_events import sequence
from tests.reliability.deployment import Deployment, Produced
from tests.reliability.ledger import ReliabilityLedger
from tests.reliability.reference import ReferenceModel, RuleSpec
from tests.reliability.workload import CATALOG, random_events

pytestmark = [pytest.mark.reliability, pytest.mark.filterwarnings("ignore:No application metrics")]


def _lanes(rng: random.Random, factor: int) -> tuple[str, str]:
    if factor > 1:
        return ("shardId-000000000000/pk-a", "shardId-000000000000/pk-b")
    return ("shardId-000000000000", "shardId-000000000001")


def _produce(rng: random.Random, lanes: tuple[str, str]) -> dict[str, list[Produced]]:
    people = [f"user-{i}" for i in range(rng.randint(1, 3))]
    events = random_events(rng, people, rng.randint(20, 50))
    streams: dict[str, list[Produced]] = {lane: [] for lane in lanes}
    for n, event in enumerate(events, start=1):
        lane = rng.choice(lanes)
        shard = int(lane.split("/")[0][-1])
        streams[lane].append(Produced(lane, int(sequence(n, shard=shard)), event))
    return streams


class Lanes:
    """Lambda's side for two concurrent lanes: a container and a checkpoint each. Batches of the two
    lanes interleave at random, and sometimes one lane's whole invocation runs *inside* the other's,
    between computing its writes and sending them."""

    def __init__(self, stack: Deployment, streams: dict[str, list[Produced]], rng: random.Random) -> None:
        self.stack = stack
        self.streams = streams
        self.rng = rng
        self.checkpoints = dict.fromkeys(streams, 0)
        self.nested: list[Callable[[], None]] = []
        self.interleavings = 0
        stack.extra_hooks.append(("before-call.dynamodb.PutItem", self._between))
        stack.extra_hooks.append(("before-call.dynamodb.BatchExecuteStatement", self._between))
        self.containers: dict[str, Any] = {lane: stack.new_container() for lane in streams}

    def _between(self, **_: Any) -> None:
        if self.nested:
            self.nested.pop()()

    def remaining(self) -> list[str]:
        return [lane for lane, records in self.streams.items() if self.checkpoints[lane] < len(records)]

    def deliver(self, lane: str) -> None:
        start = self.checkpoints[lane]
        batch = self.streams[lane][start : start + self.rng.randint(1, 8)]
        response = self.stack.invoke(self.stack.batch(batch), container=self.containers[lane])
        failed = {int(f["itemIdentifier"]) for f in response["batchItemFailures"]}
        done = [p for p in batch if not failed or p.sequence < min(failed)]
        self.checkpoints[lane] = start + len(done)

    def run(self, limit: int = 1_000) -> None:
        for _ in range(limit):
            lanes = self.remaining()
            if not lanes:
                return
            lane = self.rng.choice(lanes)
            others = [other for other in lanes if other != lane]
            if others and self.rng.random() < 0.4:
                self.interleavings += 1
                self.nested.append(functools.partial(self.deliver, others[0]))
            self.deliver(lane)
            self.nested.clear()
        raise AssertionError(f"lanes still behind after {limit} invocations: {self.checkpoints}")


def _commit_order(
    stack: Deployment, streams: dict[str, list[Produced]], problems: list[str]
) -> dict[tuple[str, str], list[Produced]]:
    """Per counter, the events in the order its committed versions absorbed them."""
    outputs = {rule_id: output for output, rule_id in stack.rule_ids.items()}
    by_counter: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for commit in stack.commits.commits:
        by_counter[(outputs[commit.rule_id], commit.user_id)].append(commit)
    specs = {s.output: s for s in CATALOG}
    order: dict[tuple[str, str], list[Produced]] = {}
    for key, commits in by_counter.items():
        versions = [c.version for c in commits]
        if sorted(versions) != list(range(1, len(versions) + 1)):
            problems.append(f"counter {key}: committed versions {versions}")
            continue
        marks: dict[str, int] = {}
        absorbed: list[Produced] = []
        for commit in sorted(commits, key=lambda c: c.version):
            moved = [lane for lane, mark in commit.marks.items() if mark != marks.get(lane)]
            if not moved:
                continue  # a version that only cleared what the counter owed (sent, or claimed)
            if len(moved) != 1:
                problems.append(f"counter {key} v{commit.version}: lane marks moved on {moved}")
            for lane in moved:
                low, high = marks.get(lane, -1), commit.marks[lane]
                if high < low:
                    problems.append(f"counter {key} v{commit.version}: lane {lane} mark went back")
                absorbed += [
                    p
                    for p in streams[lane]
                    if low < p.sequence <= high and p.event.user == key[1] and specs[key[0]].matches(p.event)
                ]
            marks = dict(commit.marks)
        order[key] = absorbed
    return order


def _lane_prefixes(got: list[tuple[str, int]], wanted: list[tuple[str, int]]) -> bool:
    """A settled counter absorbed, on each lane, the events up to where it settled and none after."""
    for lane in {lane for lane, _ in wanted}:
        mine = [seq for name, seq in got if name == lane]
        theirs = [seq for name, seq in wanted if name == lane]
        if mine != theirs[: len(mine)]:
            return False
    return set(got) <= set(wanted)


def _order_free_checks(
    stack: Deployment, streams: dict[str, list[Produced]], spec: RuleSpec, problems: list[str]
) -> None:
    """A rule that resets on ``count = N`` fires once per N events however the lanes interleave."""
    assert spec.count is not None and spec.count[0] == "equal" and spec.reset
    target = spec.count[1]
    produced = [p for records in streams.values() for p in records if spec.matches(p.event)]
    counters = stack.counters()
    for user in {p.event.user for p in produced}:
        total = sum(1 for p in produced if p.event.user == user)
        state = counters.get((spec.output, str(user)))
        got = (state.count, state.fired) if state else None
        if got != (total % target, total // target):
            problems.append(f"{spec.output} of {user}: (count, fired) {got} for {total} events")


@pytest.mark.parametrize("factor", [1, 2], ids=["two-shards", "parallelization-factor-2"])
def test_parallel_lanes_on_the_same_users_lose_no_increment_and_fire_once_per_crossing(
    deploy: Callable[..., Deployment], ledger: ReliabilityLedger, examples: int, factor: int
) -> None:
    row = ledger.scenario(
        7,
        "Parallel shards",
        "Two lanes (two shards, or ParallelizationFactor 2 on one shard), each with its own container and "
        "counter cache, update the same 1-3 users. Their invocations interleave at random and, in 40% of "
        "them, one lane's whole invocation runs between the other's computing and sending its "
        "conditional Put, so versions conflict. Checked against the commit order read off the wire: each "
        "counter's versions are 1..n, every event absorbed once, final counters and fired events equal "
        "the sequential model in that order, and a count-reset rule fires exactly events // N times.",
    )
    equal_reset = next(s for s in CATALOG if s.count and s.count[0] == "equal" and s.reset)
    for run in range(examples // 2 if factor == 1 else examples - examples // 2):
        rng = random.Random(f"parallel-{factor}-{run}")
        environment = {"PARALLELIZATION_FACTOR": str(factor)}
        with deploy(rng, **environment) as stack:
            stack.publish(CATALOG)
            streams = _produce(rng, _lanes(rng, factor))
            lanes = Lanes(stack, streams, rng)
            lanes.run()
            stack.drain_outbox()
            problems: list[str] = []
            order = _commit_order(stack, streams, problems)
            settled_counters = stack.counters()
            model = ReferenceModel()
            specs = {s.output: s for s in CATALOG}
            for (output, _user), absorbed in order.items():
                for p in absorbed:
                    model.feed([specs[output]], p.lane, p.sequence, p.event)
            for key in {
                (o, str(p.event.user))
                for o, spec in specs.items()
                for r in streams.values()
                for p in r
                if spec.matches(p.event)
            }:
                wanted = sorted(
                    (p.lane, p.sequence)
                    for r in streams.values()
                    for p in r
                    if p.event.user == key[1] and specs[key[0]].matches(p.event)
                )
                got = sorted((p.lane, p.sequence) for p in order.get(key, []))
                state = settled_counters.get(key)
                if got != wanted and not (
                    state is not None and state.settled and _lane_prefixes(got, wanted)
                ):
                    problems.append(
                        f"counter {key}: absorbed {len(got)} events of {len(wanted)}, or out of order"
                    )
            _order_free_checks(stack, streams, equal_reset, problems)
            problems += stack.compare(model, CATALOG).differences
            row.record(faults=stack.commits.conflicts, differences=problems)
    assert row.differences == 0, row.verdict()
