"""The scheduled evaluator: backfill what the aggregator cannot count, re-evaluate every open date and
rolling-window rule over the rollups, and send only the changes.

The real-time path marks users as their events arrive; this run covers what it cannot see: history
from before a series' activation, a rolling window moving on while a user is quiet, and anything a
failed batch left behind. Both paths compare with the value last sent, kept in the rollup itself, and
change it in the same conditional write as the outbox entries, so neither ever sends a change twice.

A run that crashes after committing some changes leaves their actions owed by the rollups, shown to
the relay; the next run (or the relay, whichever comes first) sends them, and finds nothing else to
change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Protocol
from zoneinfo import ZoneInfo

from pia.core.actions import NOT_READY, READY, Action, ActionTarget
from pia.core.state import Change, Pending, commit_loop, owe, send_and_clear
from pia.counting.counters import utc_seconds
from pia.rules.ruleset import Ruleset
from pia.targets.relay import DueItems, relay_due
from pia.timeseries.archive import RawObject, hour_prefix
from pia.timeseries.backfill import (
    DEFAULT_UNIT_USERS,
    SETTLE,
    BackfillEngine,
    BackfillFailed,
    BackfillTask,
    Coverage,
    HistoryUnit,
    UserHistory,
    backfill_tasks,
)
from pia.timeseries.backfill_engine import ArchiveReader, ArchiveScan
from pia.timeseries.evaluation import changes, rollup_frame
from pia.timeseries.readiness import Readiness, readiness
from pia.timeseries.rollups import (
    BEGINNING,
    DayTotal,
    Decision,
    SeriesKey,
    SeriesPlan,
    SeriesRollup,
    date_action,
    decide,
    is_final,
    local_day,
    merge_endpoints,
    plan_series,
    record_sent,
)
from pia.timeseries.seen import SeenSummary

EVALUATOR_LANE = "evaluator"
ARCHIVE_HOUR_CLOSES = timedelta(minutes=75)
"""An archive hour is complete once every batch that started in it has finished: the hour itself
plus the aggregator's longest possible run."""
FIRST_SEEN_HOURS = 24
SEEN_HOURS_PER_RUN = 48


class RollupSource(DueItems[SeriesKey, SeriesRollup], Protocol):
    def series_rollups(self, series: str) -> list[SeriesRollup]: ...

    def partitions(self) -> list[str]: ...


class CoverageStore(Protocol):
    def all(self) -> dict[str, Coverage]: ...

    def record(self, series: str, coverage: Coverage, now: int) -> None: ...

    def finalized(self) -> set[str]: ...

    def record_final(self, rule_id: str, now: int) -> None: ...


class RawArchive(ArchiveReader, Protocol):
    def keys(self, *, start_after: str = "", prefix: str = "raw/") -> Iterable[str]: ...

    def read(self, key: str) -> RawObject: ...


class SeenStore(Protocol):
    def summary(self, day: date) -> SeenSummary: ...

    def save(self, day: date, summary: SeenSummary, now: int) -> None: ...

    def cursor(self) -> datetime | None: ...

    def set_cursor(self, hour: datetime) -> None: ...


@dataclass
class EvaluationReport:
    ruleset_version: int = 0
    series: int = 0
    rules: int = 0
    rollups_read: int = 0
    backfilled: list[str] = field(default_factory=list)
    backfill_events: int = 0
    backfill_duplicates: int = 0
    backfill_path: str = ""
    bad_archive_lines: int = 0
    ready: int = 0
    not_ready: int = 0
    actions_sent: int = 0
    actions_deferred: int = 0
    recovered: int = 0
    conflicts: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    seen_hours: int = 0
    finalized: list[str] = field(default_factory=list)
    readiness: list[Readiness] = field(default_factory=list)
    """Per live date rule: is its history computed yet (:mod:`pia.timeseries.readiness`)."""

    def summary(self) -> dict[str, object]:
        backfill_path = {"backfill_path": self.backfill_path} if self.backfill_path else {}
        return {
            "ruleset_version": self.ruleset_version,
            "series": self.series,
            "rules": self.rules,
            "rollups_read": self.rollups_read,
            "backfilled": list(self.backfilled),
            "backfill_events": self.backfill_events,
            **backfill_path,
            "ready": self.ready,
            "not_ready": self.not_ready,
            "actions_sent": self.actions_sent,
            "actions_deferred": self.actions_deferred,
            "recovered": self.recovered,
            "conflicts": self.conflicts,
            "failures": len(self.failures),
            "seen_hours": self.seen_hours,
            "finalized": list(self.finalized),
            "readiness": [line.to_json() for line in self.readiness],
        }


Update = Callable[[SeriesRollup, bool], tuple[SeriesRollup, list[Action]] | None]


def _with_backfill(state: SeriesRollup, history: UserHistory | None) -> SeriesRollup:
    if history is None:
        return replace(state, backfill={})
    return replace(
        state, backfill=dict(history.days), endpoints=merge_endpoints(history.endpoints, state.endpoints)
    )


class Evaluator:
    def __init__(
        self,
        rulesets: Callable[[], Ruleset],
        rollups: RollupSource,
        coverage: CoverageStore,
        targets: Sequence[ActionTarget],
        *,
        zone: ZoneInfo,
        retention_days: int,
        archive: RawArchive | None = None,
        backfill: BackfillEngine | None = None,
        seen: SeenStore | None = None,
        settle: timedelta = SETTLE,
        max_rounds: int = 6,
        hand_over_seconds: int = 300,
    ) -> None:
        self._hand_over = hand_over_seconds
        self._rulesets = rulesets
        self._rollups = rollups
        self._coverage = coverage
        self._targets = list(targets)
        self._zone = zone
        self._retention_days = retention_days
        self._archive = archive
        self._backfill_engine = backfill or (ArchiveScan(archive) if archive is not None else None)
        self._seen = seen
        self._settle = settle
        self._max_rounds = max_rounds

    def run(self, now: datetime) -> EvaluationReport:
        report = EvaluationReport()
        epoch = utc_seconds(now)
        self._recover(epoch, report)
        ruleset = self._rulesets()
        report.ruleset_version = ruleset.version
        today = local_day(now, self._zone)
        closing = {r.rule_id for r in ruleset.date_rules if is_final(r, today)} - self._coverage.finalized()
        plans = plan_series(ruleset, today, include_final=closing)
        report.series = len(plans)
        report.rules = sum(len(plan.rules) for plan in plans.values())
        if plans:
            rollups: dict[str, list[SeriesRollup]] = {}
            for series, plan in plans.items():
                rollups[series] = [r.under(plan.activation) for r in self._rollups.series_rollups(series)]
                report.rollups_read += len(rollups[series])
            waiting: set[str] = set()
            tasks: list[BackfillTask] = []
            if self._backfill_engine is not None:
                oldest = today - timedelta(days=self._retention_days)
                tasks = backfill_tasks(
                    plans, self._coverage.all(), today, now, oldest=oldest, settle=self._settle
                )
                if tasks:
                    waiting = self._backfill(self._backfill_engine, tasks, rollups, epoch, report)
            report.readiness = readiness(
                plans,
                tasks,
                report.backfilled,
                today=today,
                zone=self._zone,
                archive=self._backfill_engine is not None,
                waiting_reason=report.failures.get("backfill", ""),
            )
            for series, plan in plans.items():
                if series not in waiting:
                    self._evaluate(plan, rollups[series], today, now, epoch, report)
            self._finalize(plans, closing, epoch, report)
        if self._archive is not None and self._seen is not None:
            self._summarize_seen(self._archive, self._seen, now, report)
        return report

    def _finalize(
        self, plans: Mapping[str, SeriesPlan], closing: set[str], epoch: int, report: EvaluationReport
    ) -> None:
        """Mark closed rules done once their history is final and every change of theirs is committed
        (committed means in the outbox: delivery is then the relay's job, not a reason to re-run)."""
        if not closing:
            return
        coverage = self._coverage.all()
        for series, plan in plans.items():
            done = coverage.get(series)
            history_final = plan.starts <= BEGINNING or (
                done is not None and done.activation == plan.activation and done.final
            )
            failed = any(key.startswith(f"{series}/") for key in report.failures)
            if not history_final or failed:
                continue
            for rule in plan.rules:
                if rule.rule_id in closing:
                    self._coverage.record_final(rule.rule_id, epoch)
                    report.finalized.append(rule.rule_id)

    def _recover(self, epoch: int, report: EvaluationReport) -> None:
        """Send what a crashed run (or a refusing target) left owed, before deciding anything new:
        the relay's own routine, claims decide who sends."""
        relayed = relay_due(self._rollups, self._targets, epoch, self._rollups.partitions())
        report.recovered += relayed.pending
        report.actions_sent += relayed.delivered
        report.actions_deferred += len(relayed.failed)
        report.failures.update({f"action/{key}": reason for key, reason in relayed.failed.items()})

    def _backfill(
        self,
        engine: BackfillEngine,
        tasks: list[BackfillTask],
        rollups: dict[str, list[SeriesRollup]],
        epoch: int,
        report: EvaluationReport,
    ) -> set[str]:
        """Merge the engine's histories into rollups unit by unit; the series it could not compute are
        returned, to be evaluated next run rather than on part of their history."""
        plans = {task.plan.series: task.plan for task in tasks}
        current = {series: {r.user_id: r for r in rollups[series]} for series in plans}
        merged: dict[str, set[str]] = {series: set() for series in plans}
        failed: set[str] = set()
        try:
            for unit in engine.histories(tasks, self._zone):
                merged[unit.series].update(unit.histories)
                failed |= self._merge(plans[unit.series], unit, current[unit.series], epoch, report)
        except BackfillFailed as error:
            report.failures["backfill"] = str(error)
            return set(plans)
        for series, plan in plans.items():
            gone = [user for user, r in current[series].items() if r.backfill and user not in merged[series]]
            for n in range(0, len(gone), DEFAULT_UNIT_USERS):
                cleared = gone[n : n + DEFAULT_UNIT_USERS]
                failed |= self._merge(plan, HistoryUnit(series, {}), current[series], epoch, report, cleared)
        stats = engine.stats
        report.backfill_path = stats.path
        report.backfill_events += stats.events
        report.backfill_duplicates += stats.duplicates
        report.bad_archive_lines += stats.bad_lines
        for task in tasks:
            series = task.plan.series
            rollups[series] = list(current[series].values())
            if series not in failed:
                self._coverage.record(
                    series, Coverage(task.plan.activation, task.first_day, task.final), epoch
                )
                report.backfilled.append(series)
        return set()

    def _merge(
        self,
        plan: SeriesPlan,
        unit: HistoryUnit,
        current: dict[str, SeriesRollup],
        epoch: int,
        report: EvaluationReport,
        cleared: Sequence[str] = (),
    ) -> set[str]:
        """Write one unit's histories (and clear ``cleared`` users' stale ones); the series if any failed."""
        histories = unit.histories
        bases = {
            SeriesKey(plan.series, user): current.get(user)
            or SeriesRollup(plan.series, user).under(plan.activation)
            for user in (*histories, *cleared)
        }

        def update(state: SeriesRollup, retry: bool) -> tuple[SeriesRollup, list[Action]] | None:
            new = _with_backfill(state, histories.get(state.user_id))
            return None if new == state else (new, [])

        committed, failed = self._write(bases, update, plan, epoch, report)
        current.update({state.user_id: state for state in committed.values()})
        return {plan.series} if failed else set()

    def _evaluate(
        self,
        plan: SeriesPlan,
        states: list[SeriesRollup],
        today: date,
        now: datetime,
        epoch: int,
        report: EvaluationReport,
    ) -> None:
        frame = rollup_frame(states)
        found: dict[str, list[Decision]] = {}
        for rule in plan.rules:
            changed = changes(rule, frame, today)
            for user, value, count, total in zip(
                changed.index, changed["value"], changed["count"], changed["total"], strict=True
            ):
                found.setdefault(user, []).append(
                    Decision(rule, str(value), DayTotal(int(count), Decimal(total)))
                )
        bases = {state.key: state for state in states if state.user_id in found}

        def update(state: SeriesRollup, retry: bool) -> tuple[SeriesRollup, list[Action]] | None:
            decisions = decide(state, plan.rules, today) if retry else found[state.user_id]
            if not decisions:
                return None
            new = record_sent(state, decisions)
            cause = (EVALUATOR_LANE, state.version)
            return new, [
                date_action(d, new, cause=cause, lane=EVALUATOR_LANE, occurred_at=now) for d in decisions
            ]

        self._write(bases, update, plan, epoch, report)

    def _write(
        self,
        bases: Mapping[SeriesKey, SeriesRollup],
        update: Update,
        plan: SeriesPlan,
        epoch: int,
        report: EvaluationReport,
    ) -> tuple[dict[SeriesKey, SeriesRollup], set[SeriesKey]]:
        """Write ``update(state)`` for each rollup through the one commit path; after a conflict,
        ``update`` runs again (with ``retry``) on the item as it is now. Its actions are sent at
        once and, until cleared, shown to the relay: no redelivery would repair a crashed run."""
        names = [t.name for t in self._targets]

        def transition(key: SeriesKey, state: SeriesRollup, retry: bool) -> Change[SeriesRollup] | None:
            change = update(state.under(plan.activation), retry)
            if change is None:
                return None
            new, actions = change
            owed = owe(
                new,
                actions,
                names,
                lanes={EVALUATOR_LANE},
                now=epoch,
                hand_over=self._hand_over,
                publish=True,
            )
            return Change(owed.state, owed.send, tuple(actions))

        done = commit_loop(
            bases,
            transition,
            self._rollups,
            base=lambda key: bases[key],
            now=epoch,
            max_rounds=self._max_rounds,
        )
        report.conflicts += done.conflicts
        for key, reason in done.failed.items():
            report.failures[f"{key.series}/{key.user_id}"] = reason
        owed: dict[SeriesKey, tuple[Pending, ...]] = {}
        for key, change in done.changes.items():
            actions: tuple[Action, ...] = change.note
            report.ready += sum(1 for a in actions if a.value == READY)
            report.not_ready += sum(1 for a in actions if a.value == NOT_READY)
            if change.send:
                owed[key] = change.send
        sent = send_and_clear(
            owed,
            done.states,
            self._targets,
            self._rollups,
            self._rollups,
            now=epoch,
            base=lambda key: done.states[key],
        )
        report.actions_sent += len(sent.delivered)
        report.actions_deferred += len(sent.deferred)
        for (action_id, target_name), reason in sent.deferred.items():
            report.failures[f"action/{action_id}/{target_name}"] = reason
        return done.states, set(done.failed)

    def _summarize_seen(
        self, archive: RawArchive, seen: SeenStore, now: datetime, report: EvaluationReport
    ) -> None:
        """Fold the archive hours completed since the last run into per-day summaries of seen values."""
        latest = (now - ARCHIVE_HOUR_CLOSES).astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        cursor = seen.cursor()
        hour = cursor + timedelta(hours=1) if cursor else latest - timedelta(hours=FIRST_SEEN_HOURS - 1)
        summaries: dict[date, SeenSummary] = {}
        done: datetime | None = None
        while hour <= latest and report.seen_hours < SEEN_HOURS_PER_RUN:
            summary = summaries.setdefault(hour.date(), SeenSummary())
            for key in archive.keys(prefix=hour_prefix(hour)):
                raw = archive.read(key)
                report.bad_archive_lines += raw.bad_lines
                for _, event in raw.events:
                    summary.add(event)
            done = hour
            report.seen_hours += 1
            hour += timedelta(hours=1)
        epoch = utc_seconds(now)
        for day, summary in summaries.items():
            stored = seen.summary(day)
            stored.merge(summary)
            seen.save(day, stored, epoch)
        if done is not None:
            seen.set_cursor(done)
