"""The time-series path of each aggregator batch: archive the raw events, update the rollups of the
series that live date rules read, and mark users who now meet such a rule at once.

Cost, per batch: one S3 PutObject for the archive, always; rollup writes only for (series, user)
pairs with new events of a series a live, open date rule reads, coalesced per batch and committed
like counters (transactions of up to 100 items, no reads). Deciding a user's date rules costs
nothing more: the rollup being written holds every day of the user's windows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from pia.core.actions import Action, ActionTarget
from pia.core.events import Event
from pia.core.state import (
    Change,
    CommitSettings,
    ParkingPort,
    Pending,
    StatePort,
    commit_loop,
    owe,
    owed_by_lane,
    send_and_clear,
)
from pia.counting.aggregator import ExtensionOutcome, InboundRecord
from pia.counting.counters import Position, utc_seconds
from pia.rules.ruleset import Ruleset
from pia.timeseries.archive import ArchivePort, archive_batch
from pia.timeseries.rollups import (
    SeriesKey,
    SeriesPlan,
    SeriesRollup,
    absorb,
    date_action,
    decide,
    in_audience,
    kept_wake,
    local_day,
    next_change,
    plan_series,
    record_sent,
)

ROLLUPS = "rollup"


class RollupPort(StatePort[SeriesKey, SeriesRollup], ParkingPort, Protocol):
    """The rollups' table: conditional writes of rollup items, and where parked actions go."""

    def use_layout(self, layout: Mapping[str, int]) -> None: ...


Runs = dict[SeriesKey, tuple[SeriesPlan, list[tuple[Position, Event]]]]


def group_by_series(records: Sequence[InboundRecord], plans: dict[str, SeriesPlan]) -> Runs:
    runs: Runs = {}
    for record in records:
        for plan in plans.values():
            if plan.matches(record.event):
                key = SeriesKey(plan.series, record.event.user_id)
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
        targets: Sequence[ActionTarget],
        *,
        zone: ZoneInfo,
        retention_days: int,
        settings: CommitSettings,
    ) -> None:
        self._archive = archive
        self._rollups = rollups
        self._targets = list(targets)
        self._zone = zone
        self._retention_days = retention_days
        self._settings = settings

    def process(self, records: Sequence[InboundRecord], ruleset: Ruleset, now: datetime) -> ExtensionOutcome:
        if not records:
            return ExtensionOutcome()
        if self._archive is not None:
            archived = archive_batch(self._archive, records, now)
            if archived.failed:
                return archived
        if self._rollups is None:
            return ExtensionOutcome()
        today = local_day(now, self._zone)
        plans = plan_series(ruleset, today)
        if not plans:
            return ExtensionOutcome()
        lanes = {r.position.lane for r in records}
        self._rollups.use_layout(ruleset.series_partitions)
        return self._commit_runs(
            group_by_series(records, plans), self._rollups, today, utc_seconds(now), lanes
        )

    def _commit_runs(
        self, runs: Runs, rollups: RollupPort, today: date, now: int, lanes: set[str]
    ) -> ExtensionOutcome:
        oldest = today - timedelta(days=self._retention_days)
        names = [t.name for t in self._targets]

        def transition(key: SeriesKey, base: SeriesRollup, retry: bool) -> Change[SeriesRollup] | None:
            plan, events = runs[key]
            step = absorb(
                base,
                plan,
                events,
                zone=self._zone,
                oldest=oldest,
                now=now,
                lane_retention_seconds=self._settings.lane_retention_seconds,
            )
            if step.last is None:
                return None
            decisions = decide(step.state, plan.rules, today, step.days)
            state = record_sent(step.state, decisions)
            state = replace(
                state,
                wake=kept_wake(base.wake, next_change(state, plan.rules, today), self._zone),
                keep=in_audience(state, plan.rules),
            )
            position, event = step.last
            actions = [
                date_action(
                    decision,
                    replace(state, version=base.version + 1),
                    cause=(position.lane, position.sequence),
                    lane=position.lane,
                    occurred_at=event.timestamp,
                )
                for decision in decisions
            ]
            change = owe(
                state, actions, names, lanes=lanes, now=now, hand_over=self._settings.hand_over_seconds
            )
            return Change(change.state, change.send, (tuple(actions), change.note))

        done = commit_loop(
            runs,
            transition,
            rollups,
            base=lambda key: SeriesRollup(series=key.series, user_id=key.user_id),
            now=now,
            settings=self._settings,
            kind=ROLLUPS,
        )
        actions: list[Action] = []
        owed: dict[SeriesKey, tuple[Pending, ...]] = {}
        parked: list[Pending] = []
        for key, change in done.changes.items():
            new_actions, overflow = change.note
            actions.extend(new_actions)
            parked.extend(overflow or ())
            if change.send:
                owed[key] = change.send
        found = owed_by_lane({**done.unchanged, **done.states}, lanes, {a.action_id for a in actions})
        recovered = sum(len(p) for p in found.values())
        for key, pending in found.items():
            owed[key] = (*owed.get(key, ()), *pending)
        if parked:
            rollups.park(parked, now)
        sent = send_and_clear(
            owed,
            {**done.unchanged, **done.states},
            self._targets,
            rollups,
            rollups,
            now=now,
            settings=self._settings,
            kind=ROLLUPS,
            base=lambda key: SeriesRollup(series=key.series, user_id=key.user_id),
        )
        reasons = {
            position.token: f"rollup: {reason}"
            for key, reason in done.failed.items()
            for position, _ in runs[key][1]
        }
        failed = frozenset(
            position for _, events in runs.values() for position, _ in events if position.token in reasons
        )
        return ExtensionOutcome(failed, reasons, tuple(actions), sent, recovered, done.conflicts)
