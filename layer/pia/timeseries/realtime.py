"""The time-series path of each aggregator batch: archive the raw events, update the rollups of the
series that live date rules read, and mark users who now meet such a rule at once.

Cost, per batch: one S3 PutObject for the archive, always; rollup writes only for (series, user)
pairs with new events of a series a live, open date rule reads, coalesced per batch and committed
like counters (transactions of up to 100 items, no reads). Deciding a user's date rules costs
nothing more: the rollup being written holds every day of the user's windows.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from pia.core.actions import Action
from pia.core.events import Event
from pia.counting.aggregator import ExtensionOutcome, InboundRecord
from pia.counting.counters import Position, utc_seconds
from pia.counting.store import WriteStatus
from pia.rules.ruleset import Ruleset
from pia.timeseries.rollups import (
    SeriesPlan,
    SeriesRollup,
    absorb,
    date_action,
    decide,
    local_day,
    plan_series,
    record_sent,
)
from pia.timeseries.store import RollupCommit, RollupWrite


class ArchivePort(Protocol):
    def put(self, records: Sequence[InboundRecord], now: datetime) -> str: ...


class RollupPort(Protocol):
    def commit(self, writes: Sequence[RollupWrite], now: int) -> RollupCommit: ...


class RollupCache:
    """Last committed rollup per (series, user), so a warm container writes without reading."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: OrderedDict[tuple[str, str], SeriesRollup] = OrderedDict()

    def get(self, key: tuple[str, str]) -> SeriesRollup | None:
        state = self._items.get(key)
        if state is not None:
            self._items.move_to_end(key)
        return state

    def put(self, state: SeriesRollup) -> None:
        self._items[state.key] = state
        self._items.move_to_end(state.key)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)


Runs = dict[tuple[str, str], tuple[SeriesPlan, list[tuple[Position, Event]]]]


def group_by_series(records: Sequence[InboundRecord], plans: dict[str, SeriesPlan]) -> Runs:
    runs: Runs = {}
    for record in records:
        for plan in plans.values():
            if plan.matches(record.event):
                key = (plan.series, record.event.user_id)
                if key not in runs:
                    runs[key] = (plan, [])
                runs[key][1].append((record.position, record.event))
    return runs


class TimeSeriesPath:
    """The aggregator's :class:`~pia.counting.aggregator.BatchExtension` for date and rolling-window rules."""

    def __init__(
        self,
        archive: ArchivePort | None,
        rollups: RollupPort | None,
        target_names: Sequence[str],
        *,
        zone: ZoneInfo,
        retention_days: int,
        lane_retention_seconds: int,
        cache_size: int = 50_000,
        max_rounds: int = 6,
    ) -> None:
        self._archive = archive
        self._rollups = rollups
        self._targets = list(target_names)
        self._zone = zone
        self._retention_days = retention_days
        self._lane_retention = lane_retention_seconds
        self._max_rounds = max_rounds
        self.cache = RollupCache(cache_size)

    def process(self, records: Sequence[InboundRecord], ruleset: Ruleset, now: datetime) -> ExtensionOutcome:
        if not records:
            return ExtensionOutcome()
        if self._archive is not None:
            try:
                self._archive.put(records, now)
            except Exception as exc:
                reason = f"raw event archive: {type(exc).__name__}: {exc}"
                return ExtensionOutcome(
                    frozenset(r.position for r in records), {r.position.token: reason for r in records}
                )
        if self._rollups is None:
            return ExtensionOutcome()
        today = local_day(now, self._zone)
        plans = plan_series(ruleset, today)
        if not plans:
            return ExtensionOutcome()
        return self._commit_runs(group_by_series(records, plans), self._rollups, today, utc_seconds(now))

    def _commit_runs(self, runs: Runs, rollups: RollupPort, today: date, now: int) -> ExtensionOutcome:
        oldest = today - timedelta(days=self._retention_days)
        pending = dict(runs)
        actions: list[Action] = []
        reasons: dict[str, str] = {}
        for _ in range(self._max_rounds):
            writes: list[RollupWrite] = []
            decided: dict[tuple[str, str], list[Action]] = {}
            for key, (plan, events) in pending.items():
                base = self.cache.get(key) or SeriesRollup(series=key[0], user_id=key[1])
                step = absorb(
                    base,
                    plan,
                    events,
                    zone=self._zone,
                    oldest=oldest,
                    now=now,
                    lane_retention_seconds=self._lane_retention,
                )
                if step.last is None:
                    continue
                decisions = decide(step.state, plan.rules, today, step.days)
                state = replace(record_sent(step.state, decisions), version=base.version + 1)
                position, event = step.last
                new_actions = [
                    date_action(
                        decision,
                        state,
                        cause=(position.lane, position.sequence),
                        lane=position.lane,
                        occurred_at=event.timestamp,
                    )
                    for decision in decisions
                ]
                outbox = [(action, target) for action in new_actions for target in self._targets]
                writes.append(RollupWrite(state, base.version, outbox))
                decided[key] = new_actions
            if not writes:
                break
            result = rollups.commit(writes, now)
            retry: Runs = {}
            for write in writes:
                key = write.state.key
                status = result.status.get(key, WriteStatus.FAILED)
                if status is WriteStatus.COMMITTED:
                    self.cache.put(write.state)
                    actions.extend(decided[key])
                elif status is WriteStatus.CONFLICT:
                    self.cache.put(result.current.get(key) or SeriesRollup(series=key[0], user_id=key[1]))
                    retry[key] = pending[key]
                else:
                    reason = f"rollup: {result.reasons.get(key, 'write failed')}"
                    reasons.update({position.token: reason for position, _ in pending[key][1]})
            pending = retry
            if not pending:
                break
        else:
            for _, events in pending.values():
                reasons.update(
                    {p.token: "rollup: still conflicting after repeated attempts" for p, _ in events}
                )
        failed = frozenset(
            position for _, events in runs.values() for position, _ in events if position.token in reasons
        )
        return ExtensionOutcome(failed, reasons, tuple(actions))
