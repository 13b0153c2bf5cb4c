"""The aggregator's batch logic: decoded records in, committed counters and dispatched actions out.

Pure orchestration over three ports (counter store, ruleset source, action targets), so the same
code runs in Lambda, in ``pia replay``, in the benchmarks and against fakes in unit tests. The
write path itself is :mod:`pia.core.state`; this module supplies the counters' transition.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from pia.core.actions import Action, ActionTarget
from pia.core.events import Event
from pia.core.state import (
    MAX_PENDING,
    Change,
    CommitSettings,
    ParkingPort,
    Pending,
    Sent,
    StatePort,
    commit_loop,
    owe,
    owed_by_lane,
    send_and_clear,
    without_delivered,
)
from pia.counting.counters import (
    UTC_ZONE,
    CounterKey,
    CounterState,
    Position,
    Run,
    Step,
    apply_events,
    group_by_counter,
    utc_seconds,
)
from pia.rules.model import Rule
from pia.rules.ruleset import Ruleset

COUNTERS = "counter"


@dataclass(frozen=True)
class InboundRecord:
    position: Position
    event: Event


class CounterPort(StatePort[CounterKey, CounterState], ParkingPort, Protocol):
    """The counters' table: conditional writes of counter items, where parked actions go, and each
    lane's mark of the last record whose batch sent its actions."""

    def mark_sent(self, lanes: Mapping[str, int], now: int) -> bool: ...

    def sent_through(self, lanes: Sequence[str]) -> dict[str, int]: ...


@dataclass(frozen=True)
class ExtensionOutcome:
    """What an extension did with a batch: the records it could not commit (with reasons keyed by
    position token), the actions it committed, and what its send-and-clear step did with them."""

    failed: frozenset[Position] = frozenset()
    reasons: Mapping[str, str] = field(default_factory=dict)
    actions: tuple[Action, ...] = ()
    sent: Sent | None = None
    recovered: int = 0
    conflicts: int = 0


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
    settled: int = 0
    ambiguous_metric: int = 0
    actions: list[Action] = field(default_factory=list)
    actions_sent: int = 0
    actions_deferred: int = 0
    actions_parked: int = 0
    conflicts: int = 0
    recovered: int = 0
    failure_reasons: dict[str, str] = field(default_factory=dict)
    """Records not committed (position token -> why): Lambda redelivers them."""
    deferred: dict[str, str] = field(default_factory=dict)
    """Committed actions a target refused (``action/<id>/<target>`` -> why): the relay retries them."""
    ruleset_version: int = 0

    def absorb(self, sent: Sent) -> None:
        self.actions_sent += len(sent.delivered)
        self.actions_deferred += len(sent.deferred)
        self.actions_parked += len(sent.parked)
        for (action_id, target), reason in sent.deferred.items():
            self.deferred[f"action/{action_id}/{target}"] = reason


class Aggregator:
    def __init__(
        self,
        store: CounterPort,
        rulesets: Callable[[], Ruleset],
        targets: Sequence[ActionTarget],
        *,
        settings: CommitSettings,
        extensions: Sequence[BatchExtension] = (),
        lanes_recur: bool = False,
        zone: ZoneInfo = UTC_ZONE,
    ) -> None:
        """``lanes_recur``: every lane is a shard (``ParallelizationFactor`` 1), so an item's lane
        delivers its next batch and that batch proves the item's sent actions delivered: they need
        no clearing write (:func:`pia.core.state.delivered_before`). With partition-key lanes, a
        lane may never come back, so delivered actions are cleared by a write as they are sent."""
        self._store = store
        self._rulesets = rulesets
        self._targets = list(targets)
        self._settings = settings
        self._extensions = list(extensions)
        self._lanes_recur = lanes_recur
        self._zone = zone

    def process(self, records: Sequence[InboundRecord]) -> BatchReport:
        ruleset = self._rulesets()
        moment = self._settings.clock()
        now = utc_seconds(moment)
        report = BatchReport(ruleset_version=ruleset.version)
        runs = group_by_counter(((r.position, r.event) for r in records), ruleset.aggregator_rules)
        lanes = {r.position.lane for r in records}
        starts: dict[str, int] = {}
        for record in records:
            lane, sequence = record.position.lane, record.position.sequence
            starts[lane] = min(sequence, starts.get(lane, sequence))
        ends = _last_of(records)
        owed, rest = self._commit_pass(runs, lanes, starts, ends, now, report, recover=True)
        for extension in self._extensions:
            outcome = extension.process(records, ruleset, moment)
            report.failed |= outcome.failed
            report.failure_reasons.update(outcome.reasons)
            report.actions.extend(outcome.actions)
            report.recovered += outcome.recovered
            report.conflicts += outcome.conflicts
            if outcome.sent is not None:
                report.absorb(outcome.sent)
        lazy = self._lanes_recur and not rest and not report.failed
        self._send(owed, now, report, clear=not lazy, proof=lambda: self._store.mark_sent(ends, now))
        while rest:
            owed, rest = self._commit_pass(rest, lanes, starts, ends, now, report, recover=False)
            self._send(owed, now, report, clear=True)
        return report

    def _commit_pass(
        self,
        runs: Mapping[CounterKey, tuple[Rule, Run]],
        lanes: set[str],
        starts: Mapping[str, int],
        ends: Mapping[str, int],
        now: int,
        report: BatchReport,
        *,
        recover: bool,
    ) -> tuple[dict[CounterKey, tuple[Pending, ...]], dict[CounterKey, tuple[Rule, Run]]]:
        """Commit each counter's run (or, where it would owe more than an item holds, the part of it up
        to that point; the rest is returned for a further pass once these actions are sent)."""
        names = [t.name for t in self._targets]
        steps: dict[CounterKey, Step] = {}

        def transition(key: CounterKey, state: CounterState, retry: bool) -> Change[CounterState] | None:
            rule, events = runs[key]
            state = without_delivered(state, starts)
            room = max(1, (MAX_PENDING - len(state.pending)) // max(1, len(names)))
            step = apply_events(
                state,
                rule,
                events,
                now=now,
                lane_retention_seconds=self._settings.lane_retention_seconds,
                max_actions=room,
                zone=self._zone,
            )
            steps[key] = step
            if not step.changed:
                return None
            sequences: dict[str, int] = {}
            for position, _ in events:
                sequences[position.lane] = max(position.sequence, sequences.get(position.lane, 0))
            change = owe(
                step.state,
                step.actions,
                names,
                lanes=lanes,
                now=now,
                hand_over=self._settings.hand_over_seconds,
                sequences=sequences,
            )
            if not step.hold_until:
                return change
            held = change.state.with_outbox(change.state.pending, max(change.state.due, step.hold_until))
            return Change(held, note=change.note)

        done = commit_loop(
            runs,
            transition,
            self._store,
            base=lambda key: CounterState(rule_id=key.rule_id, user_id=key.user_id),
            now=now,
            settings=self._settings,
            kind=COUNTERS,
        )
        report.conflicts += done.conflicts
        owed: dict[CounterKey, tuple[Pending, ...]] = {}
        rest: dict[CounterKey, tuple[Rule, Run]] = {}
        parked: list[Pending] = []
        for key, change in done.changes.items():
            step = steps[key]
            report.actions.extend(step.actions)
            report.applied += step.applied
            report.duplicates += step.duplicates
            report.ambiguous_metric += step.ambiguous_metric
            if change.send:
                owed[key] = change.send
            parked.extend(change.note or ())
            rule, events = runs[key]
            if 0 <= step.consumed < len(events):
                rest[key] = (rule, events[step.consumed :])
        for key in done.unchanged:
            report.duplicates += steps[key].duplicates
            report.settled += steps[key].settled
        for key, reason in done.failed.items():
            for position, _ in runs[key][1]:
                report.failed.add(position)
                report.failure_reasons[position.token] = reason
        if recover:
            fresh = {a.action_id for a in report.actions}
            recovered = owed_by_lane({**done.unchanged, **done.states}, lanes, fresh, starts, ends)
            if recovered and self._lanes_recur:
                recovered = self._not_marked_sent(recovered)
            report.recovered += sum(len(p) for p in recovered.values())
            for key, pending in recovered.items():
                owed[key] = (*owed.get(key, ()), *pending)
        if parked:
            self._store.park(parked, now)
            report.actions_parked += len(parked)
        return owed, rest

    def _not_marked_sent(
        self, owed: Mapping[CounterKey, tuple[Pending, ...]]
    ) -> dict[CounterKey, tuple[Pending, ...]]:
        """A redelivered batch's own entries, less those its first delivery already sent: a batch can
        come again after an invocation that returned (Kinesis delivers at least once)."""
        marks = self._store.sent_through(
            sorted({p.action.lane for pending in owed.values() for p in pending})
        )
        left: dict[CounterKey, tuple[Pending, ...]] = {}
        for key, pending in owed.items():
            kept = tuple(p for p in pending if not (p.sequence and p.sequence <= marks.get(p.action.lane, 0)))
            if kept:
                left[key] = kept
        return left

    def _send(
        self,
        owed: Mapping[CounterKey, tuple[Pending, ...]],
        now: int,
        report: BatchReport,
        *,
        clear: bool,
        proof: Callable[[], bool] | None = None,
    ) -> None:
        sent = send_and_clear(
            owed,
            {},
            self._targets,
            self._store,
            self._store,
            now=now,
            settings=self._settings,
            kind=COUNTERS,
            base=lambda key: CounterState(rule_id=key.rule_id, user_id=key.user_id),
            clear_delivered=clear,
            proof=proof,
        )
        report.absorb(sent)


def _last_of(records: Sequence[InboundRecord]) -> dict[str, int]:
    last: dict[str, int] = {}
    for record in records:
        lane, sequence = record.position.lane, record.position.sequence
        last[lane] = max(sequence, last.get(lane, 0))
    return last
