"""Daily rollups for date and rolling-window rules, and the one definition of when such a rule is met.

One rollup per (series, user) holds that user's count and sum for each day, keyed by the calendar
date of ``event_timestamp`` in the stack's time zone. Keeping a user's days together is what makes
the real-time path free: the aggregator, about to write the rollup, already holds every day a
window needs, so it evaluates the user's date rules with no read and no extra item; and the
scheduled evaluator reads one item per active user, however many days and events there are.

A rollup has two parts that never overlap. ``days`` holds the events the aggregator absorbed: those
stamped at or after the series' activation. ``backfill`` holds the older ones, recomputed from the
raw event archive by the evaluator. Each part names the activation it belongs to, so a series that
is removed and later comes back starts afresh instead of mixing two histories.

The rollup also keeps, per rule, the value last sent for the user (``sent``): both paths change it
in the same conditional write that carries the outbox entries, so they never send a change twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import NamedTuple, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pia.core.actions import NOT_READY, READY, Action, ActionKind, action_id_for
from pia.core.events import Event
from pia.core.state import Pending
from pia.counting.counters import (
    LaneMark,
    Position,
    admit,
    prune_lanes,
    remember_endpoint,
)
from pia.rules.model import Rule
from pia.rules.ruleset import Ruleset, activation_for_new_series

ZERO = Decimal(0)
OPEN_DAYS_AFTER_FINISH = 1
"""A fixed window still takes late events for one day after FinishDate; from the next day on its
result is final and neither path sends anything more for it."""
BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)
"""The activation of a series no publisher dated: every event is live, nothing is backfilled."""


def load_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"TIMEZONE {name!r} is not an IANA time zone name (for example UTC or Europe/Paris)"
        ) from None


def local_day(moment: datetime, zone: ZoneInfo) -> date:
    return moment.astimezone(zone).date()


def activation_instant(text: str) -> datetime:
    """The poller's activation day (``YYYY-MM-DD``) starts at that day's UTC midnight; a full ISO
    timestamp is taken as it is."""
    if not text:
        return BEGINNING
    if len(text) == 10:
        day = date.fromisoformat(text)
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class DayTotal:
    count: int = 0
    total: Decimal = ZERO

    def plus(self, other: DayTotal) -> DayTotal:
        return DayTotal(self.count + other.count, self.total + other.total)


def is_final(rule: Rule, today: date) -> bool:
    return (
        rule.window_days is None
        and rule.finish_date is not None
        and today > rule.finish_date + timedelta(days=OPEN_DAYS_AFTER_FINISH)
    )


def is_met(rule: Rule, totals: DayTotal, seen: bool = True) -> bool:
    """Only users with at least one matching event in the window are considered; for an absence
    rule, only users ``seen`` before (a day in their rollup, or already in the audience: a series
    rebuilt on a new activation may find no day of a user quiet for longer than the retention, and
    only an event takes a user out) with none in the window."""
    if rule.absent:
        return seen and totals.count == 0
    return totals.count > 0 and rule.is_met(totals.count, totals.total)


def next_value(met: bool, sent: str | None) -> str | None:
    """What to send now, given whether the rule is met and what was sent last (``None``: nothing)."""
    if met:
        return None if sent == READY else READY
    return NOT_READY if sent == READY else None


class SeriesKey(NamedTuple):
    series: str
    user_id: str


@dataclass(frozen=True)
class SeriesRollup:
    """One user's daily totals for one series. ``version`` 0 means the item does not exist yet."""

    series: str
    user_id: str
    version: int = 0
    activation: str = ""
    days: Mapping[date, DayTotal] = field(default_factory=dict)
    lanes: Mapping[str, LaneMark] = field(default_factory=dict)
    backfill_activation: str = ""
    backfill: Mapping[date, DayTotal] = field(default_factory=dict)
    backfill_source: str = ""
    """The computation ``backfill`` came from (its results' place): the sweep after a later one landed
    drops a backfill of another, whose user that one no longer found."""
    endpoints: tuple[str, ...] = ()
    sent: Mapping[str, str] = field(default_factory=dict)
    recent_ids: tuple[str, ...] = ()
    pending: tuple[Pending, ...] = ()
    due: int = 0
    partitions: int = 0
    """The series' partition count this item is keyed under, as read from it (0: a new item, keyed by
    the ruleset's layout): what writes it back, the relay included, keeps it where it is."""
    wake: int = 0
    """Epoch seconds of the next moment the evaluator may change this user's output without a new
    event (the sparse ``due`` index); 0: only an event or a backfill can change it."""
    keep: bool = False
    """The item holds a user in an absence audience, so it never expires: however long they stay
    quiet, only this item can take them out (``not-ready``) when they act again."""

    @property
    def key(self) -> SeriesKey:
        return SeriesKey(self.series, self.user_id)

    def with_outbox(self, pending: tuple[Pending, ...], due: int) -> Self:
        return replace(self, pending=pending, due=due)

    def with_version(self, version: int) -> Self:
        return replace(self, version=version)

    def under(self, activation: str) -> SeriesRollup:
        """This rollup as the series' current activation sees it: parts of an earlier one are dropped."""
        state = self
        if state.activation != activation:
            state = replace(state, activation=activation, days={}, lanes={})
        if state.backfill_activation != activation:
            state = replace(state, backfill_activation=activation, backfill={}, backfill_source="")
        return state

    def window_total(self, first: date, last: date) -> DayTotal:
        total = DayTotal()
        for part in (self.days, self.backfill):
            for day, value in part.items():
                if first <= day <= last:
                    total = total.plus(value)
        return total

    def last_day(self) -> date | None:
        return max((*self.days, *self.backfill), default=None)

    @property
    def seen(self) -> bool:
        """Whether the user has a matching event on record: the scope of absence rules."""
        return bool(self.days) or bool(self.backfill)


@dataclass(frozen=True)
class SeriesPlan:
    """A series that live, still-open date rules read, with the activation that splits its history."""

    series: str
    rules: tuple[Rule, ...]
    activation: str
    starts: datetime

    def matches(self, event: Event) -> bool:
        rule = self.rules[0]
        return event.event_type == rule.event_name and rule.matches(event)

    def value(self, event: Event) -> Decimal:
        """What the event adds to the day's sum (every rule of a series sums the same metric)."""
        rule = self.rules[0]
        if not rule.needs_sum:
            return ZERO
        value = event.metric_for(rule.metric_name)
        return ZERO if value is None else value

    def earliest_day(self, today: date) -> date:
        """The first day any of the rules' windows reaches back to on ``today``. An absence rule
        reaches back as far as history goes (the caller bounds it by the retention): a user whose last
        event is older than the quiet period is exactly who it is for."""
        return min(
            date.min if rule.absent else window[0]
            for rule in self.rules
            if (window := rule.window_for(today)) is not None
        )


def plan_series(
    ruleset: Ruleset, today: date, include_final: Collection[str] = frozenset()
) -> dict[str, SeriesPlan]:
    """The series of the open date rules, plus the closed ones named in ``include_final``: a rule
    whose window had already ended when it was added still gets its one, final evaluation."""
    by_series: dict[str, list[Rule]] = {}
    for rule in ruleset.date_rules:
        if (not is_final(rule, today) or rule.rule_id in include_final) and rule.window_for(
            today
        ) is not None:
            by_series.setdefault(rule.series, []).append(rule)
    plans: dict[str, SeriesPlan] = {}
    for series, rules in by_series.items():
        activation = ruleset.series_activation.get(series, "")
        if not activation and ruleset.published_at:
            activation = activation_for_new_series(activation_instant(ruleset.published_at))
        plans[series] = SeriesPlan(series, tuple(rules), activation, activation_instant(activation))
    return plans


@dataclass(frozen=True)
class RollupStep:
    """The result of absorbing a run of events into one rollup."""

    state: SeriesRollup
    applied: int
    duplicates: int
    days: frozenset[date]
    last: tuple[Position, Event] | None


def absorb(
    state: SeriesRollup,
    plan: SeriesPlan,
    events: Sequence[tuple[Position, Event]],
    *,
    zone: ZoneInfo,
    oldest: date,
    now: int,
    lane_retention_seconds: int,
) -> RollupStep:
    """Add the events (this user's, matching the series, in stream order) that are the aggregator's:
    new on their lane, stamped at or after the activation, and dated within the retention."""
    state = state.under(plan.activation)
    days = dict(state.days)
    lanes = dict(state.lanes)
    endpoints = state.endpoints
    recent = state.recent_ids
    touched: set[date] = set()
    applied = duplicates = 0
    last: tuple[Position, Event] | None = None
    for position, event in events:
        new, recent = admit(lanes, recent, position, event, now)
        if not new:
            duplicates += 1
            continue
        if event.timestamp < plan.starts:
            continue
        day = local_day(event.timestamp, zone)
        if day < oldest:
            continue
        days[day] = days.get(day, DayTotal()).plus(DayTotal(1, plan.value(event)))
        endpoints = remember_endpoint(endpoints, event.endpoint_id)
        touched.add(day)
        applied += 1
        last = (position, event)
    if not applied:
        return RollupStep(state, 0, duplicates, frozenset(), None)
    kept = {day: total for day, total in days.items() if day >= oldest}
    lanes = prune_lanes(lanes, now, lane_retention_seconds)
    new_state = replace(state, days=kept, lanes=lanes, endpoints=endpoints, recent_ids=recent)
    return RollupStep(new_state, applied, duplicates, frozenset(touched), last)


@dataclass(frozen=True)
class Decision:
    rule: Rule
    value: str
    totals: DayTotal


def decide(
    state: SeriesRollup, rules: Sequence[Rule], today: date, touched: Iterable[date] | None = None
) -> list[Decision]:
    """The changes to send for the rollup's user: for each rule whose window (on ``today``) holds one
    of the ``touched`` days, or for every rule when ``touched`` is ``None``."""
    days = None if touched is None else set(touched)
    decisions: list[Decision] = []
    for rule in rules:
        window = rule.window_for(today)
        if window is None:
            continue
        first, last = window
        if days is not None and not any(first <= day <= last for day in days):
            continue
        totals = state.window_total(first, last)
        sent = state.sent.get(rule.rule_id)
        value = next_value(is_met(rule, totals, state.seen or sent == READY), sent)
        if value is not None:
            decisions.append(Decision(rule, value, totals))
    return decisions


def next_change(state: SeriesRollup, rules: Sequence[Rule], today: date) -> date | None:
    """The first day, from ``today`` on, on which evaluating the rollup sends something, or ``None``.

    A fixed window's span does not move, so only a rolling window changes a user's output over time:
    on day ``d + window`` the day ``d`` slides out, and a day stamped in the future slides in on its
    own date. Between those days every window holds the same days, so checking each of them (and
    ``today``, for a change already owed) finds the first change without walking the calendar."""
    days = {*state.days, *state.backfill}
    candidates = {today}
    for rule in rules:
        if rule.window_days is not None:
            span = timedelta(days=rule.window_days)
            candidates.update(day + span for day in days if day + span > today)
            candidates.update(day for day in days if day > today)
    for day in sorted(candidates):
        if decide(state, rules, day):
            return day
    return None


def in_audience(state: SeriesRollup, rules: Iterable[Rule]) -> bool:
    """Whether the rollup holds its user in one of ``rules``' absence audiences (``keep``)."""
    return any(rule.absent and state.sent.get(rule.rule_id) == READY for rule in rules)


def wake_at(day: date | None, zone: ZoneInfo) -> int:
    """Epoch seconds at which ``day`` starts in the stack's time zone (0 for ``None``)."""
    if day is None:
        return 0
    return int(datetime(day.year, day.month, day.day, tzinfo=zone).timestamp())


def kept_wake(stored: int, change: date | None, zone: ZoneInfo) -> int:
    """The due moment a real-time write stores: the new one, unless the stored one is earlier. Waking
    early costs the evaluator one read that finds nothing to send (and moves the moment on); moving
    it later on every event would cost the ``due`` index two writes each time, since each event can
    push back the day a window's total falls under its target."""
    wake = wake_at(change, zone)
    if stored and (not wake or stored < wake):
        return stored
    return wake


def rules_signature(plan: SeriesPlan, today: date) -> str:
    """What the due moments kept in a series' rollups were computed from: its activation and its open
    rules. When it changes, every rollup's due moment is recomputed (a sweep). Rules past their
    window's end never change an output again, so their closing alone does not count as a change."""
    rules = sorted(
        hashlib.sha256(json.dumps(r.to_json(), sort_keys=True).encode()).hexdigest()[:16]
        for r in plan.rules
        if not is_final(r, today)
    )
    return " ".join([plan.activation or "-", *rules])


def swept_signature(plan: SeriesPlan, today: date, source: str) -> str:
    """What a series' last sweep covered: its rules and, once a backfill merged in units landed, that
    backfill's source. A new one landing calls for a sweep, which drops the backfills it lacks."""
    signature = rules_signature(plan, today)
    return f"{signature} @{source}" if source else signature


def record_sent(state: SeriesRollup, decisions: Iterable[Decision]) -> SeriesRollup:
    sent = dict(state.sent)
    for decision in decisions:
        sent[decision.rule.rule_id] = decision.value
    return replace(state, sent=sent)


def date_action(
    decision: Decision,
    state: SeriesRollup,
    *,
    cause: tuple[object, ...],
    lane: str,
    occurred_at: datetime,
) -> Action:
    """``cause`` names what decided the change (a stream position, or the evaluator and the rollup
    version it read), so a retry of the same decision carries the same action id."""
    rule = decision.rule
    return Action(
        action_id=action_id_for(rule.rule_id, state.user_id, decision.value, *cause),
        kind=ActionKind.SET_ATTRIBUTE,
        user_id=state.user_id,
        rule_id=rule.rule_id,
        output_name=rule.output_name,
        value=decision.value,
        endpoint_ids=state.endpoints,
        count=decision.totals.count,
        total=decision.totals.total,
        occurred_at=occurred_at,
        lane=lane,
    )


def merge_endpoints(older: Sequence[str], newer: Sequence[str]) -> tuple[str, ...]:
    endpoints: tuple[str, ...] = ()
    for endpoint_id in (*older, *newer):
        endpoints = remember_endpoint(endpoints, endpoint_id)
    return endpoints
