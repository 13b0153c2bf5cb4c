"""The aggregator's batch logic: decoded records in, committed counters and dispatched actions out.

Pure orchestration over three ports (counter store, ruleset source, action targets), so the same
code runs in Lambda, in ``pia replay``, in the benchmarks and against fakes in unit tests.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from pia.core.actions import Action, ActionTarget
from pia.core.delivery import deliver
from pia.core.events import Event
from pia.counting.counters import CounterState, Position, Step, apply_events, group_by_counter, utc_seconds
from pia.counting.store import CommitResult, CounterWrite, WriteStatus
from pia.rules.model import Rule
from pia.rules.ruleset import Ruleset


@dataclass(frozen=True)
class InboundRecord:
    position: Position
    event: Event


class CounterPort(Protocol):
    def commit(self, writes: Sequence[CounterWrite], now: int) -> CommitResult: ...

    def clear_outbox(self, entries: Sequence[tuple[Action, str]]) -> None: ...

    def pending_outbox_for_lane(self, lane: str) -> list[tuple[Action, str]]: ...

    def claim_outbox(self, entries: Sequence[tuple[Action, str]], now: int) -> list[tuple[Action, str]]: ...


@dataclass(frozen=True)
class ExtensionOutcome:
    """What an extension did with a batch: the records it could not commit (with reasons keyed by
    position token), and the actions it committed to the outbox, which are sent with the counters'."""

    failed: frozenset[Position] = frozenset()
    reasons: Mapping[str, str] = field(default_factory=dict)
    actions: tuple[Action, ...] = ()


class BatchExtension(Protocol):
    """A further consumer of each batch's accepted records (the time-series path plugs in here)."""

    def process(
        self, records: Sequence[InboundRecord], ruleset: Ruleset, now: datetime
    ) -> ExtensionOutcome: ...


@dataclass
class BatchReport:
    failed: set[Position] = field(default_factory=set)
    applied: int = 0
    duplicates: int = 0
    ambiguous_metric: int = 0
    actions: list[Action] = field(default_factory=list)
    actions_sent: int = 0
    actions_deferred: int = 0
    conflicts: int = 0
    recovered: int = 0
    failure_reasons: dict[str, str] = field(default_factory=dict)
    ruleset_version: int = 0


class CounterCache:
    """Last committed state per (rule, user), so a warm container writes without reading."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: OrderedDict[tuple[str, str], CounterState] = OrderedDict()

    def get(self, key: tuple[str, str]) -> CounterState | None:
        state = self._items.get(key)
        if state is not None:
            self._items.move_to_end(key)
        return state

    def put(self, state: CounterState) -> None:
        self._items[state.key] = state
        self._items.move_to_end(state.key)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


class Aggregator:
    def __init__(
        self,
        store: CounterPort,
        rulesets: Callable[[], Ruleset],
        targets: Sequence[ActionTarget],
        *,
        clock: Callable[[], datetime],
        lane_retention_seconds: int,
        cache_size: int = 200_000,
        max_rounds: int = 6,
        extensions: Sequence[BatchExtension] = (),
    ) -> None:
        self._store = store
        self._rulesets = rulesets
        self._targets = list(targets)
        self._clock = clock
        self._lane_retention = lane_retention_seconds
        self._max_rounds = max_rounds
        self._extensions = list(extensions)
        self.cache = CounterCache(cache_size)

    def process(self, records: Sequence[InboundRecord]) -> BatchReport:
        ruleset = self._rulesets()
        moment = self._clock()
        now = utc_seconds(moment)
        report = BatchReport(ruleset_version=ruleset.version)
        runs = group_by_counter(((r.position, r.event) for r in records), ruleset.aggregator_rules)
        committed_actions = self._commit_runs(runs, now, report)
        for extension in self._extensions:
            outcome = extension.process(records, ruleset, moment)
            report.failed |= outcome.failed
            report.failure_reasons.update(outcome.reasons)
            committed_actions.extend(outcome.actions)
        report.actions = committed_actions
        delivered = self._dispatch([(a, t.name) for a in committed_actions for t in self._targets], report)
        if report.duplicates:
            self._recover_lanes({r.position.lane for r in records}, delivered, now, report)
        return report

    def _commit_runs(
        self,
        runs: dict[tuple[str, str], tuple[Rule, list[tuple[Position, Event]]]],
        now: int,
        report: BatchReport,
    ) -> list[Action]:
        pending = dict(runs)
        actions: list[Action] = []
        for _ in range(self._max_rounds):
            writes: list[CounterWrite] = []
            steps: dict[tuple[str, str], Step] = {}
            for key, (rule, events) in pending.items():
                base = self.cache.get(key) or CounterState(rule_id=key[0], user_id=key[1])
                step = apply_events(base, rule, events, now=now, lane_retention_seconds=self._lane_retention)
                if not step.changed:
                    report.duplicates += step.duplicates
                    continue
                state = step.state
                outbox = [(action, target.name) for action in step.actions for target in self._targets]
                writes.append(CounterWrite(state, base.version, outbox))
                steps[key] = step
            if not writes:
                return actions
            result = self._store.commit(writes, now)
            retry: dict[tuple[str, str], tuple[Rule, list[tuple[Position, Event]]]] = {}
            for write in writes:
                key = write.state.key
                status = result.status.get(key, WriteStatus.FAILED)
                if status is WriteStatus.COMMITTED:
                    self.cache.put(write.state)
                    step = steps[key]
                    actions.extend(step.actions)
                    report.applied += step.applied
                    report.duplicates += step.duplicates
                    report.ambiguous_metric += step.ambiguous_metric
                    continue
                if status is WriteStatus.CONFLICT:
                    report.conflicts += 1
                    current = result.current.get(key)
                    self.cache.put(current or CounterState(rule_id=key[0], user_id=key[1]))
                    retry[key] = pending[key]
                else:
                    self._fail(pending[key][1], report, result.reasons.get(key, "write failed"))
            pending = retry
            if not pending:
                return actions
        for _, events in pending.values():
            self._fail(events, report, "still conflicting after repeated attempts")
        return actions

    def _fail(self, events: Sequence[tuple[Position, Event]], report: BatchReport, reason: str) -> None:
        for position, _ in events:
            report.failed.add(position)
            report.failure_reasons[position.token] = reason

    def _dispatch(self, entries: Sequence[tuple[Action, str]], report: BatchReport) -> set[tuple[str, str]]:
        """Send after commit; what a target refuses stays in the outbox for a later retry."""
        if not entries:
            return set()
        delivery = deliver(entries, self._targets)
        report.actions_sent += len(delivery.delivered)
        report.actions_deferred += len(delivery.failed)
        for (action_id, target_name), reason in delivery.failed.items():
            report.failure_reasons[f"action/{action_id}/{target_name}"] = reason
        if delivery.delivered:
            self._store.clear_outbox(delivery.delivered)
        return {(a.action_id, name) for a, name in delivery.delivered}

    def _recover_lanes(
        self, lanes: set[str], delivered: set[tuple[str, str]], now: int, report: BatchReport
    ) -> None:
        """A redelivery means an earlier invocation on these lanes may have died after committing but
        before sending. Lambda runs one invocation per lane at a time, so whatever that predecessor
        left in the outbox for these lanes is ours to send now, not in five minutes."""
        leftovers: list[tuple[Action, str]] = []
        for lane in sorted(lanes):
            leftovers.extend(
                (a, t)
                for a, t in self._store.pending_outbox_for_lane(lane)
                if (a.action_id, t) not in delivered
            )
        if leftovers:
            report.recovered += len(leftovers)
            self._dispatch(self._store.claim_outbox(leftovers, now), report)
