"""Per-(rule, user) counter state and the exact, replay-safe way events change it.

This is the heart of exactly-once counting. Each counter remembers, per *lane* (the unit in which
Lambda guarantees order: a shard, or a shard and partition key with ParallelizationFactor > 1), the
highest sequence number it has absorbed. A redelivered record is at or below that mark and is
ignored; a record never absorbed is above it. Because the mark travels in the same conditional
write as the count, a count and its dedupe state can never disagree.

Sequence numbers are compared as Python integers and stored as strings: they reach 129 digits,
and DynamoDB numbers hold 38.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple, Self
from zoneinfo import ZoneInfo

from pia.core.actions import READY, Action, ActionKind, action_id_for
from pia.core.events import Event
from pia.core.limits import MAX_ENDPOINTS_PER_USER
from pia.core.state import Pending
from pia.rules.aggregates import (
    BEYOND_DISTINCT,
    MAX_DISTINCT,
    SUMS,
    VALUE_UPDATE_SECONDS,
    Aggregate,
    average_text,
    distinct_digest,
    mean,
    value_text,
)
from pia.rules.caps import CapWindow
from pia.rules.model import Comparison, Rule

ZERO = Decimal(0)
UTC_ZONE = ZoneInfo("UTC")
NO_WINDOW = CapWindow()


@dataclass(frozen=True)
class Position:
    """Where a record sits in the stream."""

    lane: str
    sequence: int

    @property
    def token(self) -> str:
        return f"{self.lane}/{self.sequence}"


@dataclass(frozen=True)
class LaneMark:
    sequence: int
    seen_at: int


class CounterKey(NamedTuple):
    rule_id: str
    user_id: str


Run = list[tuple[Position, Event]]
"""One item's events of a batch, in stream order."""


@dataclass(frozen=True)
class Measures:
    low: Decimal | None = None
    high: Decimal | None = None
    distinct: frozenset[bytes] = frozenset()
    """Digests of the distinct values seen (``distinct`` rules), at most MAX_DISTINCT of them."""
    distinct_over: bool = False
    """A further value arrived once ``distinct`` was full: the measure is MAX_DISTINCT or more."""
    shown: str | None = None
    """The value a ``value`` rule last queued for its target (the one the target ends up with)."""
    shown_at: int = 0
    """When that value is sent (now, or later when the rate limit deferred it)."""


NO_MEASURES = Measures()


@dataclass(frozen=True)
class CounterState:
    """One (rule, user) counter. ``version`` 0 means the item does not exist yet.

    ``settled``: no further event can change any output of the rule for this user (a ``reset = no``
    rule already ``ready``, or a count condition that can no longer hold). Such a counter is never
    written again: its count stays where it settled. A ``once`` cap, once used, settles it too.

    ``cap``: the Cap's open window (two numbers whatever the cap's size); ``capped``: crossings the
    cap held back (they reset the count and fired nothing).
    """

    rule_id: str
    user_id: str
    version: int = 0
    count: int = 0
    total: Decimal = ZERO
    ready: bool = False
    fired: int = 0
    lanes: Mapping[str, LaneMark] = field(default_factory=dict)
    endpoints: tuple[str, ...] = ()
    recent_ids: tuple[str, ...] = ()
    settled: bool = False
    pending: tuple[Pending, ...] = ()
    due: int = 0
    cap: CapWindow = NO_WINDOW
    capped: int = 0
    measures: Measures = NO_MEASURES
    """What a rule with an Aggregate or a value output keeps besides count and sum: one field, so a
    count rule's state is copied (on every write) no slower than before."""

    @property
    def shown(self) -> str | None:
        return self.measures.shown

    @property
    def key(self) -> CounterKey:
        return CounterKey(self.rule_id, self.user_id)

    @property
    def cache_weight(self) -> int:
        """How many ordinary cached states this one weighs in memory (see ``StateCache``): a distinct
        digest takes about 80 bytes in a Python set, so a full set of 1,000 weighs 14."""
        return 1 + len(self.measures.distinct) // DIGESTS_PER_CACHED_STATE

    def with_outbox(self, pending: tuple[Pending, ...], due: int) -> Self:
        return replace(self, pending=pending, due=due)

    def with_version(self, version: int) -> Self:
        return replace(self, version=version)


@dataclass(frozen=True)
class Step:
    """The result of applying a run of events to one counter."""

    state: CounterState
    actions: tuple[Action, ...]
    applied: int
    duplicates: int
    ambiguous_metric: int
    settled: int = 0
    """Events that arrived after the counter settled: nothing to count, nothing written."""
    consumed: int = -1
    """How many of the events this step took (all, unless ``max_actions`` stopped it early)."""
    hold_until: int = 0
    """A value update the rate limit deferred: the relay sends the item's outbox from then on."""

    @property
    def changed(self) -> bool:
        return self.applied > 0


def remember_endpoint(endpoints: tuple[str, ...], endpoint_id: str | None) -> tuple[str, ...]:
    if endpoint_id is None:
        return endpoints
    if endpoints and endpoints[-1] == endpoint_id:
        return endpoints
    kept = (*tuple(e for e in endpoints if e != endpoint_id), endpoint_id)
    return kept[-MAX_ENDPOINTS_PER_USER:]


RECENT_EVENT_IDS = 32
DIGESTS_PER_CACHED_STATE = 75


def event_id_digest(event_id: str) -> str:
    """A short, fixed-size stand-in for a producer's event id, so the ring stays small in the item."""
    return hashlib.blake2b(event_id.encode(), digest_size=8).hexdigest()


MAX_LANE_MARKS = 8
"""Lane marks one item keeps. With ParallelizationFactor > 1 a lane is a shard and partition key, so
random partition keys would add a mark per event; beyond this bound the oldest marks of a shard
fold into that shard's floor (``<shard>/*``), which keeps the item small whatever the keys."""
FLOOR = "/*"


def _mark_for(lanes: Mapping[str, LaneMark], lane: str) -> LaneMark | None:
    mark = lanes.get(lane)
    if mark is None and "/" in lane:
        return lanes.get(lane.split("/", 1)[0] + FLOOR)
    return mark


def _bound(lanes: dict[str, LaneMark]) -> None:
    """Fold the least recently used marks into their shard's floor until at most MAX_LANE_MARKS
    remain. A record at or below its shard's floor whose own mark was folded away is taken as a
    redelivery: exact while fewer than MAX_LANE_MARKS partition keys of one user overtake a batch
    that Lambda is still retrying."""
    while len(lanes) > MAX_LANE_MARKS:
        candidates = [
            (mark.seen_at, mark.sequence, lane)
            for lane, mark in lanes.items()
            if "/" in lane and not lane.endswith(FLOOR)
        ]
        if not candidates:
            return
        _, _, lane = min(candidates)
        mark = lanes.pop(lane)
        floor_lane = lane.split("/", 1)[0] + FLOOR
        floor = lanes.get(floor_lane)
        if floor is None or floor.sequence < mark.sequence:
            lanes[floor_lane] = LaneMark(mark.sequence, max(mark.seen_at, floor.seen_at if floor else 0))


def admit(
    lanes: dict[str, LaneMark], recent: tuple[str, ...], position: Position, event: Event, now: int
) -> tuple[bool, tuple[str, ...]]:
    """Whether a record is new to an item, or a Lambda redelivery (at or below its lane's mark) or a
    producer's resend (an ``event_id`` among the item's recent ones). Advances ``lanes`` in place;
    returns the recent ids to keep."""
    mark = _mark_for(lanes, position.lane)
    if mark is not None and position.sequence <= mark.sequence:
        return False, recent
    lanes[position.lane] = LaneMark(position.sequence, now)
    _bound(lanes)
    if event.event_id is None:
        return True, recent
    digest = event_id_digest(event.event_id)
    if digest in recent:
        return False, recent
    return True, (*recent, digest)[-RECENT_EVENT_IDS:]


def prune_lanes(lanes: Mapping[str, LaneMark], now: int, keep_seconds: int) -> dict[str, LaneMark]:
    """Forget lanes idle longer than any record could still be redelivered.

    Lambda never redelivers a record older than MaximumRecordAgeInSeconds, so a mark older than
    that (plus margin) protects nothing; dropping it keeps items small after reshards.
    """
    return {lane: mark for lane, mark in lanes.items() if now - mark.seen_at <= keep_seconds}


@dataclass(slots=True)
class _Tally:
    """A counter's aggregates while a run is applied (a local, mutable working copy)."""

    count: int
    total: Decimal
    low: Decimal | None
    high: Decimal | None
    distinct: set[bytes]
    over: bool
    ambiguous: int = 0

    @staticmethod
    def of(state: CounterState) -> _Tally:
        kept = state.measures
        distinct = set(kept.distinct) if kept.distinct else set()
        return _Tally(state.count, state.total, kept.low, kept.high, distinct, kept.distinct_over)

    def add(self, rule: Rule, event: Event) -> None:
        self.count += 1
        if rule.needs_sum:
            value = event.metric_for(rule.metric_name)
            if value is None:
                self.ambiguous += 1 if rule.metric_name is None and len(event.metrics) > 1 else 0
            else:
                self.total = SUMS.add(self.total, value)
                if rule.aggregate.keeps_extremes:
                    self.low = value if self.low is None or value < self.low else self.low
                    self.high = value if self.high is None or value > self.high else self.high
        if rule.distinct_attribute is not None:
            digest = distinct_digest(event.attributes.get(rule.distinct_attribute, ""))
            if digest not in self.distinct:
                if len(self.distinct) < MAX_DISTINCT:
                    self.distinct.add(digest)
                else:
                    self.over = True

    def reset(self) -> None:
        self.count, self.total, self.low, self.high, self.over = 0, ZERO, None, None, False
        self.distinct = set()

    def measure(self, aggregate: Aggregate) -> Decimal | None:
        """The value Operator-V compares (for ``distinct`` past its bound, more than any target)."""
        match aggregate:
            case Aggregate.COUNT:
                return Decimal(self.count)
            case Aggregate.SUM:
                return self.total
            case Aggregate.AVG:
                return mean(self.total, self.count)
            case Aggregate.MIN:
                return self.low
            case Aggregate.MAX:
                return self.high
            case Aggregate.DISTINCT:
                return BEYOND_DISTINCT if self.over else Decimal(len(self.distinct))

    def text(self, aggregate: Aggregate) -> str | None:
        """The value a ``value`` rule writes (``None`` while there is none)."""
        if aggregate is Aggregate.DISTINCT and self.over:
            return f"{MAX_DISTINCT}+"
        value = self.measure(aggregate)
        if value is None:
            return None
        return average_text(value) if aggregate is Aggregate.AVG else value_text(value)


def value_schedule(shown: str | None, shown_at: int, now: int) -> tuple[int, int]:
    """When a changed value is sent, and how long the item is held for the relay (0: sent now).

    At most one update per VALUE_UPDATE_SECONDS: a change inside the interval is deferred to its
    end, and a change while one is deferred replaces it at the same time, so the newest value wins
    and none is sent early."""
    if shown_at > now:
        return shown_at, shown_at
    if shown is None or now >= shown_at + VALUE_UPDATE_SECONDS:
        return now, 0
    at = shown_at + VALUE_UPDATE_SECONDS
    return at, at


def apply_events(
    state: CounterState,
    rule: Rule,
    events: Sequence[tuple[Position, Event]],
    *,
    now: int,
    lane_retention_seconds: int,
    max_actions: int | None = None,
    zone: ZoneInfo = UTC_ZONE,
) -> Step:
    """Apply events in stream order, exactly as if they arrived one at a time.

    ``events`` are the batch's events for this user that match ``rule``, in stream order. After
    each one the rule is evaluated: a reset rule zeroes on every crossing and fires unless its Cap's
    window (in ``zone``) is full; a non-reset rule sets its attribute once and then settles. The cap
    window travels in the same write as the lane marks, so a redelivered crossing is never charged
    twice. A crossing's time is its event's timestamp, never later than ``now``. A ``value`` rule
    writes its measure once, after the run, when it differs from the last one written (see
    :func:`value_schedule`).

    ``max_actions`` stops the step after that many actions: the rest of the events are the caller's
    to apply in a further step, once those actions are sent (an item owes a bounded number at once).
    """
    tally = _Tally.of(state)
    ready, fired = state.ready, state.fired
    window, capped = state.cap, state.capped
    lanes = dict(state.lanes)
    endpoints = state.endpoints
    recent = state.recent_ids
    actions: list[Action] = []
    applied = duplicates = settled = 0
    consumed = len(events)
    last: tuple[Position, Event] | None = None
    # Operator-V needs a measure besides count and sum only for min, max and distinct.
    compares_measure = rule.aggregate.keeps_extremes or rule.aggregate is Aggregate.DISTINCT
    for index, (position, event) in enumerate(events):
        if is_settled(rule, tally.count, ready, window):
            settled = len(events) - index
            break
        if max_actions is not None and len(actions) >= max_actions:
            consumed = index
            break
        new, recent = admit(lanes, recent, position, event, now)
        if not new:
            duplicates += 1
            continue
        endpoints = remember_endpoint(endpoints, event.endpoint_id)
        applied += 1
        last = (position, event)
        tally.add(rule, event)
        measure = tally.measure(rule.aggregate) if compares_measure else None
        if rule.writes_value or not rule.is_met(tally.count, tally.total, measure):
            continue
        if rule.reset:
            allowed = True
            if rule.cap is not None:
                moment = min(utc_seconds(event.timestamp), now)
                allowed, window = rule.cap.admit(window, moment, zone)
            if allowed:
                actions.append(
                    _action(ActionKind.FIRE_EVENT, rule, state.user_id, position, event, endpoints, tally)
                )
                fired += 1
            else:
                capped += 1
            tally.reset()
        elif not ready:
            actions.append(
                _action(ActionKind.SET_ATTRIBUTE, rule, state.user_id, position, event, endpoints, tally)
            )
            ready = True
            fired += 1
    if last is None:
        return Step(state, (), 0, duplicates, tally.ambiguous, settled, consumed)
    shown, shown_at, hold_until = state.measures.shown, state.measures.shown_at, 0
    text = tally.text(rule.aggregate) if rule.writes_value else None
    if text is not None and text != shown:
        position, event = last
        actions.append(
            _action(ActionKind.SET_ATTRIBUTE, rule, state.user_id, position, event, endpoints, tally, text)
        )
        shown_at, hold_until = value_schedule(shown, shown_at, now)
        shown = text
        fired += 1
    new_state = replace(
        state,
        count=tally.count,
        total=tally.total,
        ready=ready,
        fired=fired,
        lanes=prune_lanes(lanes, now, lane_retention_seconds),
        endpoints=endpoints,
        recent_ids=recent,
        settled=is_settled(rule, tally.count, ready, window),
        cap=window,
        capped=capped,
    )
    if rule.aggregate is not Aggregate.COUNT or rule.writes_value:
        measures = Measures(tally.low, tally.high, frozenset(tally.distinct), tally.over, shown, shown_at)
        new_state = replace(new_state, measures=measures)
    return Step(
        new_state, tuple(actions), applied, duplicates, tally.ambiguous, settled, consumed, hold_until
    )


def is_settled(rule: Rule, count: int, ready: bool, window: CapWindow = NO_WINDOW) -> bool:
    """Whether no further event can change an output: a ``reset = no`` attribute is sticky once
    ``ready``; a ``once`` cap, once used, lets nothing fire again; and a count only grows (until a
    crossing, which this condition rules out), so a count condition of smaller, at most or equal that
    it has passed can never hold again."""
    if ready and not rule.reset:
        return True
    if rule.cap is not None and rule.cap.exhausted(window):
        return True
    condition = rule.count_condition
    if condition is None:
        return False
    value = Decimal(count)
    match condition.op:
        case Comparison.LT:
            return value >= condition.target
        case Comparison.LE | Comparison.EQ:
            return value > condition.target
        case _:
            return False


def _action(
    kind: ActionKind,
    rule: Rule,
    user_id: str,
    position: Position,
    event: Event,
    endpoints: tuple[str, ...],
    tally: _Tally,
    value: str | None = None,
) -> Action:
    return Action(
        action_id=action_id_for(rule.rule_id, user_id, position.lane, position.sequence),
        kind=kind,
        user_id=user_id,
        rule_id=rule.rule_id,
        output_name=rule.output_name,
        value=value if value is not None else READY if kind is ActionKind.SET_ATTRIBUTE else None,
        endpoint_ids=endpoints,
        count=tally.count,
        total=tally.total,
        occurred_at=event.timestamp,
        lane=position.lane,
    )


def group_by_counter(
    records: Iterable[tuple[Position, Event]], rules_for_event: Mapping[str, Sequence[Rule]]
) -> dict[CounterKey, tuple[Rule, Run]]:
    """Split a batch into per-(rule, user) runs, each in stream order."""
    runs: dict[CounterKey, tuple[Rule, Run]] = {}
    for position, event in records:
        for rule in rules_for_event.get(event.event_type, ()):
            if rule.matches(event):
                key = CounterKey(rule.rule_id, event.user_id)
                if key not in runs:
                    runs[key] = (rule, [])
                runs[key][1].append((position, event))
    return runs


def utc_seconds(moment: datetime) -> int:
    return int(moment.timestamp())
