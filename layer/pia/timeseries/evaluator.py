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
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from pia.core.actions import NOT_READY, READY, Action, ActionTarget
from pia.core.state import UNCACHED, Change, CommitSettings, Pending, commit_loop, owe, send_and_clear
from pia.counting.counters import utc_seconds
from pia.rules.ruleset import Ruleset
from pia.settings import DEFAULT_UNIT_ROLLUPS
from pia.targets.relay import DueItems, relay_due
from pia.timeseries.archive import RawObject, hour_prefix
from pia.timeseries.backfill import (
    SETTLE,
    BackfillEngine,
    BackfillFailed,
    BackfillTask,
    Coverage,
    UserHistory,
    backfill_tasks,
)
from pia.timeseries.backfill_engine import ArchiveReader, ArchiveScan
from pia.timeseries.backfill_results import (
    MAX_PARTS,
    BackfillResults,
    MemoryObjects,
    result_parts,
    series_source,
)
from pia.timeseries.backfill_sql import histories_from_rows
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
    in_audience,
    is_final,
    local_day,
    merge_endpoints,
    next_change,
    plan_series,
    record_sent,
    swept_signature,
    wake_at,
)
from pia.timeseries.seen import SeenSummary
from pia.timeseries.units import BACKFILL, DUE, SWEEP, LandedBackfill, RunPlan, UnitFormatError, WorkUnit

EVALUATOR_LANE = "evaluator"
ARCHIVE_HOUR_CLOSES = timedelta(minutes=75)
"""An archive hour is complete once every batch that started in it has finished: the hour itself
plus the aggregator's longest possible run."""
FIRST_SEEN_HOURS = 24
SEEN_HOURS_PER_RUN = 48


class RollupSource(DueItems[SeriesKey, SeriesRollup], Protocol):
    def rollups_by_key(self, series: str, users: Sequence[str]) -> dict[str, SeriesRollup]: ...

    def partitions(self) -> list[str]: ...

    def use_layout(self, layout: Mapping[str, int]) -> None: ...

    def series_partitions(self, series: str) -> int: ...

    def rollup_page(
        self, series: str, partition: int, *, due_at: int | None, limit: int, start: dict[str, Any] | None
    ) -> tuple[list[SeriesRollup], dict[str, Any] | None]: ...


class CoverageStore(Protocol):
    def all(self) -> dict[str, Coverage]: ...

    def record(self, series: str, coverage: Coverage, now: int) -> None: ...

    def finalized(self) -> set[str]: ...

    def record_final(self, rule_id: str, now: int) -> None: ...

    def signatures(self) -> dict[str, str]: ...

    def record_signature(self, series: str, signature: str, now: int) -> None: ...


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
    units: int = 0
    most_unit_rollups: int = 0
    completed: list[str] = field(default_factory=list)
    """Units (``series#partition``) whose last page is done: a sweep or a final evaluation is
    recorded only once every unit of its series is."""
    more: WorkUnit | None = None
    """A unit's follow-up: the rest of its due items, past its bound."""
    backfill_rows: int = 0
    """Backfill result rows merged by the units."""
    most_unit_rows: int = 0
    """The most backfill result rows one unit read (its bound holds)."""

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

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            name: (
                list(value) if isinstance(value, list) else dict(value) if isinstance(value, dict) else value
            )
            for name, value in vars(self).items()
            if name not in ("more", "readiness")
        }
        data["readiness"] = [line.to_json() for line in self.readiness]
        data["more"] = self.more.to_json() if self.more is not None else None
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> EvaluationReport:
        report = cls()
        for name, default in vars(cls()).items():
            if name in ("more", "readiness") or name not in data:
                continue
            value = data[name]
            if not isinstance(value, type(default)) or isinstance(value, bool) != isinstance(default, bool):
                raise UnitFormatError(
                    f"report: field {name!r} must be {type(default).__name__}, not {value!r}"
                )
            setattr(report, name, value)
        lines = data.get("readiness", [])
        if not isinstance(lines, list) or not all(isinstance(line, Mapping) for line in lines):
            raise UnitFormatError("report: field 'readiness' must be a list of objects")
        report.readiness = [Readiness.from_json(line) for line in lines]
        more = data.get("more")
        if more is not None:
            if not isinstance(more, Mapping):
                raise UnitFormatError("report: field 'more' must be a unit object or null")
            report.more = WorkUnit.from_json(more)
        return report

    def add(self, other: EvaluationReport) -> None:
        """Fold a unit's report into the run's: counts add up, lists and failures join."""
        for name in (
            "rollups_read",
            "backfill_events",
            "backfill_duplicates",
            "bad_archive_lines",
            "ready",
            "not_ready",
            "actions_sent",
            "actions_deferred",
            "recovered",
            "conflicts",
            "seen_hours",
            "units",
            "backfill_rows",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.most_unit_rollups = max(self.most_unit_rollups, other.most_unit_rollups)
        self.most_unit_rows = max(self.most_unit_rows, other.most_unit_rows)
        self.backfilled.extend(s for s in other.backfilled if s not in self.backfilled)
        self.finalized.extend(r for r in other.finalized if r not in self.finalized)
        self.completed.extend(other.completed)
        self.failures.update(other.failures)
        self.backfill_path = self.backfill_path or other.backfill_path


Update = Callable[[SeriesRollup, bool], tuple[SeriesRollup, list[Action]] | None]


def _current(state: SeriesRollup, source: str) -> SeriesRollup:
    """``state`` without a backfill computed by another source than ``source`` (``""``: any is kept)."""
    if not source or not state.backfill or state.backfill_source == source:
        return state
    return replace(state, backfill={}, backfill_source="")


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
        settings: CommitSettings = UNCACHED,
        unit_limit: int = DEFAULT_UNIT_ROLLUPS,
        results: BackfillResults | None = None,
    ) -> None:
        self._results = results or BackfillResults(MemoryObjects())
        self._settings = settings
        self._unit_limit = unit_limit
        self._pinned: Ruleset | None = None
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

    def _ruleset(self) -> Ruleset:
        """The ruleset, read once per invocation: a run in one invocation reads it once, not once
        per unit."""
        return self._pinned if self._pinned is not None else self._rulesets()

    def plan(self, now: datetime) -> RunPlan:
        """Recover what a crashed run owes, start (or find) the backfill of new series, and list the
        run's units: reads the pending index, the coverage items and the backfill's counts row, never a
        series' rollups nor its result rows. A series whose backfill lands gets one backfill unit per
        part of the result (merge and evaluate in one write); the next plan sweeps it, which evaluates
        its other users and drops backfills the new result no longer holds."""
        report = EvaluationReport()
        epoch = utc_seconds(now)
        self._recover(epoch, report)
        ruleset = self._ruleset()
        self._rollups.use_layout(ruleset.series_partitions)
        report.ruleset_version = ruleset.version
        today = local_day(now, self._zone)
        closing = {r.rule_id for r in ruleset.date_rules if is_final(r, today)} - self._coverage.finalized()
        plans = plan_series(ruleset, today, include_final=closing)
        report.series = len(plans)
        report.rules = sum(len(plan.rules) for plan in plans.values())
        signatures = self._coverage.signatures() if plans else {}
        coverage = self._coverage.all() if plans and self._backfill_engine is not None else {}
        sources = {
            series: done.source
            for series, done in coverage.items()
            if series in plans and done.activation == plans[series].activation
        }
        wanted = {series: swept_signature(plans[series], today, sources.get(series, "")) for series in plans}
        unswept = {
            series
            for series, source in sources.items()
            if source and signatures.get(series) != wanted[series]
        }
        waiting: set[str] = set()
        landed: dict[str, LandedBackfill] = {}
        tasks: list[BackfillTask] = []
        if plans and self._backfill_engine is not None:
            oldest = today - timedelta(days=self._retention_days)
            tasks = [
                task
                for task in backfill_tasks(plans, coverage, today, now, oldest=oldest, settle=self._settle)
                if task.plan.series not in unswept
            ]
            if tasks:
                landed = self._land(self._backfill_engine, tasks[:MAX_PARTS], report)
                waiting = {task.plan.series for task in tasks} - set(landed)
        report.readiness = readiness(
            plans,
            tasks,
            report.backfilled,
            today=today,
            zone=self._zone,
            archive=self._backfill_engine is not None,
            waiting_reason=report.failures.get("backfill", ""),
            merging={series: (0, info.parts) for series, info in landed.items()},
        )
        swept: dict[str, str] = {}
        units: list[WorkUnit] = []
        for series, plan in sorted(plans.items()):
            if series in waiting:
                continue
            closing_here = tuple(sorted(r.rule_id for r in plan.rules if r.rule_id in closing))
            if series in landed:
                source = landed[series].source
                units.extend(
                    WorkUnit(
                        series,
                        part,
                        epoch,
                        self._unit_limit,
                        mode=BACKFILL,
                        closing=closing_here,
                        source=source,
                    )
                    for part in range(landed[series].parts)
                )
                continue
            mode = DUE
            if closing_here or signatures.get(series) != wanted[series]:
                mode = SWEEP
                swept[series] = wanted[series]
            units.extend(
                WorkUnit(
                    series,
                    partition,
                    epoch,
                    self._unit_limit,
                    mode=mode,
                    closing=closing_here,
                    source=sources.get(series, ""),
                )
                for partition in range(self._rollups.series_partitions(series))
            )
        return RunPlan(
            due_at=epoch,
            ruleset_version=ruleset.version,
            units=tuple(units),
            closing=tuple(sorted(closing)),
            waiting=tuple(sorted(waiting)),
            swept=swept,
            report=report.to_json(),
            landed=landed,
        )

    def _land(
        self, engine: BackfillEngine, tasks: Sequence[BackfillTask], report: EvaluationReport
    ) -> dict[str, LandedBackfill]:
        """Compute the tasks' histories into the results, laid out by part; the landed series, with
        what ``finish`` records for them. A failed or unfinished computation lands nothing: its series
        wait for the next run rather than being evaluated on part of their history (as do the series
        past the :data:`MAX_PARTS` one computation can lay out)."""
        parts = result_parts(
            {task.plan.series: self._rollups.series_partitions(task.plan.series) for task in tasks}
        )
        try:
            prefix = engine.land(tasks, self._zone, self._results, parts)
        except BackfillFailed as error:
            report.failures["backfill"] = str(error)
            return {}
        stats = engine.stats
        report.backfill_path = stats.path
        report.backfill_events += stats.events
        report.backfill_duplicates += stats.duplicates
        report.bad_archive_lines += stats.bad_lines
        return {
            task.plan.series: LandedBackfill(
                task.plan.activation,
                task.first_day,
                task.final,
                series_source(prefix, index),
                parts[task.plan.series],
            )
            for index, task in enumerate(tasks)
        }

    def run_unit(self, unit: WorkUnit, now: datetime) -> EvaluationReport:
        """Evaluate one page of at most ``unit.limit`` rollups of one partition: those due by
        ``unit.due_at``, or every one in a sweep; or merge at most ``unit.limit`` rows of a backfill's
        part into their users' rollups. The rest comes back as ``report.more``."""
        report = EvaluationReport(units=1)
        epoch = utc_seconds(now)
        ruleset = self._ruleset()
        self._rollups.use_layout(ruleset.series_partitions)
        today = local_day(now, self._zone)
        plan = plan_series(ruleset, today, include_final=set(unit.closing)).get(unit.series)
        if plan is None:
            report.completed.append(unit.name)
            return report
        cursor: Mapping[str, Any] | None
        if unit.mode == BACKFILL:
            cursor = self._merge_part(unit, plan, today, now, epoch, report)
        else:
            states, cursor = self._rollups.rollup_page(
                unit.series,
                unit.partition,
                due_at=None if unit.mode == SWEEP else unit.due_at,
                limit=unit.limit,
                start=unit.cursor(),
            )
            report.rollups_read = report.most_unit_rollups = len(states)
            current = [state.under(plan.activation) for state in states]
            self._evaluate(plan, current, today, now, epoch, report, source=unit.source)
        if cursor:
            report.more = unit.follow_up(cursor)
        else:
            report.completed.append(unit.name)
        return report

    def _merge_part(
        self,
        unit: WorkUnit,
        plan: SeriesPlan,
        today: date,
        now: datetime,
        epoch: int,
        report: EvaluationReport,
    ) -> Mapping[str, Any] | None:
        """Merge one page of a landed backfill's part into those users' rollups, read by key, and
        evaluate them in the same conditional write: each rollup is written once. Merging replaces the
        history, and what was sent is kept in the item, so a unit run twice changes nothing more."""
        page = self._results.page(unit.source, unit.partition, unit.cursor(), unit.limit)
        histories = {user: history for _, user, history in histories_from_rows(page.rows, [])}
        found = self._rollups.rollups_by_key(unit.series, list(histories))
        report.rollups_read = report.most_unit_rollups = len(found)
        report.backfill_rows = report.most_unit_rows = len(page.rows)
        bases = {
            SeriesKey(unit.series, user): found.get(user)
            or SeriesRollup(unit.series, user).under(plan.activation)
            for user in histories
        }

        def update(state: SeriesRollup, retry: bool) -> tuple[SeriesRollup, list[Action]] | None:
            merged = replace(_with_backfill(state, histories[state.user_id]), backfill_source=unit.source)
            decisions = decide(merged, plan.rules, today)
            return self._outcome(
                state, merged, decisions, self._wake(merged, decisions, plan, today), plan, now
            )

        self._write(bases, update, plan, epoch, report)
        return page.cursor

    def finish(self, plan: RunPlan, reports: Sequence[EvaluationReport], now: datetime) -> EvaluationReport:
        """Fold the units' reports into the run's, record the backfills, sweeps and final evaluations
        that every unit of their series completed, and summarize the archive's new hours."""
        report = self._finish(plan, reports, now)
        if self._archive is not None and self._seen is not None:
            self._summarize_seen(self._archive, self._seen, now, report)
        return report

    def _finish(self, plan: RunPlan, reports: Sequence[EvaluationReport], now: datetime) -> EvaluationReport:
        report = EvaluationReport.from_json(plan.report)
        for unit_report in reports:
            report.add(unit_report)
        report.more = None
        epoch = utc_seconds(now)
        completed = set(report.completed)
        done = {
            series
            for series in {u.series for u in plan.units} | set(plan.swept) | set(plan.landed)
            if all(u.name in completed for u in plan.units if u.series == series)
            and not any(key.startswith(f"{series}/") for key in report.failures)
        }
        for series, landed in sorted(plan.landed.items()):
            if series in done:
                coverage = Coverage(landed.activation, landed.first_day, landed.final, landed.source)
                self._coverage.record(series, coverage, epoch)
                report.backfilled.append(series)
        for series, signature in plan.swept.items():
            if series in done:
                self._coverage.record_signature(series, signature, epoch)
        if plan.landed or plan.closing:
            ruleset = self._ruleset()
            today = local_day(datetime.fromtimestamp(plan.due_at, UTC), self._zone)
            plans = plan_series(ruleset, today, include_final=set(plan.closing))
            self._merged_readiness(plan, plans, completed, today, report)
            # A landed series' units evaluated only the users its history holds: its sweep, next
            # run, gives the others their final evaluation, and only then is the rule final.
            final = {s: p for s, p in plans.items() if s in done and s not in plan.landed}
            self._finalize(final, set(plan.closing), epoch, report)
        return report

    def _merged_readiness(
        self,
        plan: RunPlan,
        plans: Mapping[str, SeriesPlan],
        completed: set[str],
        today: date,
        report: EvaluationReport,
    ) -> None:
        """A landed series' readiness moves with its parts merged, and is ready once all are."""
        landed = {series: plans[series] for series in plan.landed if series in plans}
        if not landed:
            return
        tasks = [
            BackfillTask(series_plan, plan.landed[series].first_day, plan.landed[series].final)
            for series, series_plan in landed.items()
        ]
        merging = {
            series: (
                sum(1 for u in plan.units if u.series == series and u.name in completed),
                plan.landed[series].parts,
            )
            for series in landed
        }
        lines = readiness(
            landed,
            tasks,
            report.backfilled,
            today=today,
            zone=self._zone,
            archive=True,
            merging=merging,
        )
        rows = {line.row for line in lines}
        report.readiness = sorted(
            [line for line in report.readiness if line.row not in rows] + lines, key=lambda line: line.row
        )

    def run(self, now: datetime) -> EvaluationReport:
        """The whole run in one invocation: the plan, every unit and its follow-ups, then the finish.
        When a backfill lands, a second round sweeps its series at once (the state machine does that
        on its next run), so the run ends with every user evaluated on the new history."""
        self._pinned = self._rulesets()
        try:
            report = self._round(now)
            if report.backfilled:
                report.add(self._round(now))
            if self._archive is not None and self._seen is not None:
                self._summarize_seen(self._archive, self._seen, now, report)
            return report
        finally:
            self._pinned = None

    def _round(self, now: datetime) -> EvaluationReport:
        plan = self.plan(now)
        reports: list[EvaluationReport] = []
        for first in plan.units:
            unit: WorkUnit | None = first
            while unit is not None:
                reports.append(self.run_unit(unit, now))
                unit = reports[-1].more
        return self._finish(plan, reports, now)

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
        relayed = relay_due(
            self._rollups, self._targets, epoch, self._rollups.partitions(), settings=self._settings
        )
        report.recovered += relayed.pending
        report.actions_sent += relayed.delivered
        report.actions_deferred += len(relayed.failed)
        report.failures.update({f"action/{key}": reason for key, reason in relayed.failed.items()})

    def _evaluate(
        self,
        plan: SeriesPlan,
        states: list[SeriesRollup],
        today: date,
        now: datetime,
        epoch: int,
        report: EvaluationReport,
        *,
        source: str = "",
    ) -> None:
        """Evaluate ``states`` with one frame per rule and write those that change. With ``source`` (a
        sweep after a backfill landed), a backfill from another computation is dropped first."""
        current = {state.user_id: _current(state, source) for state in states}
        frame = rollup_frame(list(current.values()))
        found: dict[str, list[Decision]] = {}
        for rule in plan.rules:
            changed = changes(rule, frame, today)
            for user, value, count, total in zip(
                changed.index, changed["value"], changed["count"], changed["total"], strict=True
            ):
                found.setdefault(user, []).append(
                    Decision(rule, str(value), DayTotal(int(count), Decimal(total)))
                )
        wakes = {user: self._wake(state, found.get(user, ()), plan, today) for user, state in current.items()}
        bases = {
            state.key: state
            for state in states
            if state.user_id in found
            or current[state.user_id] is not state
            or wakes[state.user_id] != state.wake
            or in_audience(state, plan.rules) != state.keep
        }

        def update(state: SeriesRollup, retry: bool) -> tuple[SeriesRollup, list[Action]] | None:
            kept = _current(state, source)
            decisions = decide(kept, plan.rules, today) if retry else found.get(state.user_id, [])
            wake = self._wake(kept, decisions, plan, today) if retry else wakes[state.user_id]
            return self._outcome(state, kept, decisions, wake, plan, now)

        self._write(bases, update, plan, epoch, report)

    @staticmethod
    def _outcome(
        state: SeriesRollup,
        current: SeriesRollup,
        decisions: Sequence[Decision],
        wake: int,
        plan: SeriesPlan,
        now: datetime,
    ) -> tuple[SeriesRollup, list[Action]] | None:
        """``current`` (``state`` as evaluated) with ``decisions`` recorded and its due moment, and
        their actions; None when the stored item would not change."""
        new = record_sent(current, decisions)
        keep = in_audience(new, plan.rules)
        if current is state and not decisions and wake == state.wake and keep == state.keep:
            return None
        new = replace(new, wake=wake, keep=keep)
        if new == state:
            return None
        cause = (EVALUATOR_LANE, state.version)
        return new, [
            date_action(d, new, cause=cause, lane=EVALUATOR_LANE, occurred_at=now) for d in decisions
        ]

    def _wake(self, state: SeriesRollup, decisions: Iterable[Decision], plan: SeriesPlan, today: date) -> int:
        """When the rollup, once ``decisions`` are recorded, is next due (0: only an event changes it)."""
        return wake_at(next_change(record_sent(state, decisions), plan.rules, today), self._zone)

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
                hand_over=self._settings.hand_over_seconds,
                publish=True,
            )
            return Change(owed.state, owed.send, tuple(actions))

        done = commit_loop(
            bases,
            transition,
            self._rollups,
            base=lambda key: bases[key],
            now=epoch,
            settings=self._settings,
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
            settings=self._settings,
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
