"""A landed backfill is merged by bounded units, each rollup written once, whatever crashes (moto)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest

from pia.core.actions import NOT_READY, READY, Action, SendResult
from pia.core.events import Event
from pia.core.state import StateCommit, StateWrite, WriteStatus
from pia.counting.aggregator import InboundRecord
from pia.counting.counters import Position
from pia.rules.model import Rule
from pia.rules.ruleset import RulesetTable
from pia.timeseries.archive import RawEventArchive
from pia.timeseries.backfill import backfill_tasks
from pia.timeseries.backfill_engine import ArchiveScan
from pia.timeseries.backfill_results import BackfillResults, MemoryObjects
from pia.timeseries.evaluator import EvaluationReport, Evaluator
from pia.timeseries.rollups import SeriesKey, SeriesRollup, load_zone, plan_series
from pia.timeseries.store import CoverageTable, RollupStore
from pia.timeseries.units import BACKFILL, SWEEP, WorkUnit
from tests.conftest import RULESET_TABLE, TIMESERIES_TABLE, create_table
from tests.integration.timeseries_support import date_row, publish, use_partitions

BUCKET = "pia-raw-events-units"
ACTIVATION = "2026-03-10"
NOW = datetime(2026, 3, 12, 12, tzinfo=UTC)
USERS = 40
BOUND = 7
PARTS = 2


@dataclass
class Recorder:
    name: str = "recorder"
    sent: list[Action] = field(default_factory=list)

    def send(self, actions: Sequence[Action]) -> SendResult:
        self.sent.extend(actions)
        return SendResult()


class CountingStore(RollupStore):
    """Counts each rollup's writes and the most rollups one call read; can die after a commit."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.writes: Counter[SeriesKey] = Counter()
        self.most_read = 0
        self.die_after_commit: int | None = None

    def commit(
        self, writes: Sequence[StateWrite[SeriesKey, SeriesRollup]], now: int
    ) -> StateCommit[SeriesKey, SeriesRollup]:
        done = super().commit(writes, now)
        self.writes.update(k for k, status in done.status.items() if status is WriteStatus.COMMITTED)
        if self.die_after_commit is not None:
            self.die_after_commit -= 1
            if self.die_after_commit == 0:
                raise RuntimeError("killed after a commit, before sending")
        return done

    def rollups_by_key(self, series: str, users: Sequence[str]) -> dict[str, SeriesRollup]:
        found = super().rollups_by_key(series, users)
        self.most_read = max(self.most_read, len(found))
        return found


def _rule(dynamodb: Any) -> Rule:
    """A fixed-window date rule, "at least one purchase from 3 March", on ``PARTS`` partitions."""
    row = date_row("greater", "0", event="purchase", start="2026-03-03", finish="2026-03-31")
    (rule,) = publish(dynamodb, [row], ACTIVATION, datetime(2026, 3, 9, tzinfo=UTC)).rules
    use_partitions(dynamodb, {rule.series: PARTS})
    return rule


def _archive(lonely: str = "") -> RawEventArchive:
    """Each user's purchases before the activation; ``lonely``'s in an object of their own."""
    s3 = boto3.client("s3", region_name="us-east-1")
    if BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=BUCKET)
    archive = RawEventArchive(s3, BUCKET)
    start = datetime(2026, 3, 4, tzinfo=UTC)
    records = [
        InboundRecord(
            Position("shardId-000000000000", 1000 + n),
            Event(
                user_id=f"user-{n % USERS:02d}",
                event_type="purchase",
                timestamp=start + timedelta(hours=n),
                attributes={},
                metrics={"price": Decimal(n % 5)},
                endpoint_id=f"ep-{n % USERS:02d}",
            ),
        )
        for n in range(USERS * 2)
    ]
    archive.put([r for r in records if r.event.user_id != lonely], start)
    if lonely:
        archive.put([r for r in records if r.event.user_id == lonely], start + timedelta(hours=1))
    return archive


def _evaluator(
    dynamodb: Any, archive: RawEventArchive, target: Recorder | None, table: str = TIMESERIES_TABLE
) -> tuple[Evaluator, CountingStore, BackfillResults]:
    """With no target, nothing is owed, so the only writes are the merges and evaluations (a sent
    action's outbox entry is otherwise cleared by a write of its own)."""
    store = CountingStore(dynamodb, table)
    results = BackfillResults(MemoryObjects())
    evaluator = Evaluator(
        RulesetTable(dynamodb, RULESET_TABLE).current,
        store,
        CoverageTable(dynamodb, table),
        [target] if target is not None else [],
        zone=load_zone("UTC"),
        retention_days=400,
        archive=archive,
        backfill=ArchiveScan(archive),
        unit_limit=BOUND,
        results=results,
    )
    return evaluator, store, results


def _run_units(evaluator: Evaluator, units: Sequence[WorkUnit], now: datetime) -> list[EvaluationReport]:
    reports: list[EvaluationReport] = []
    for first in units:
        unit: WorkUnit | None = first
        while unit is not None:
            reports.append(evaluator.run_unit(unit, now))
            unit = reports[-1].more
    return reports


def _stored(dynamodb: Any, series: str, table: str = TIMESERIES_TABLE) -> dict[str, Any]:
    return {
        r.user_id: (dict(r.backfill), r.sent, r.endpoints)
        for r in RollupStore(dynamodb, table).series_rollups(series)
    }


def test_a_landed_backfill_is_merged_in_bounded_units_each_rollup_written_once(dynamodb: Any) -> None:
    rule = _rule(dynamodb)
    archive = _archive()
    evaluator, store, results = _evaluator(dynamodb, archive, None)

    plan = evaluator.plan(NOW)
    assert [(u.mode, u.partition) for u in plan.units] == [(BACKFILL, p) for p in range(PARTS)]
    assert (store.most_read, results.rows_read, plan.report["rollups_read"]) == (0, 0, 0)
    assert [line["state"] for line in plan.report["readiness"]] == ["computing"]  # type: ignore[index]

    # Only the first part merged so far (the other unit failed): progress is half, nothing recorded.
    first_part = _run_units(evaluator, plan.units[:1], NOW)
    halfway = evaluator.finish(plan, first_part, NOW)
    assert halfway.backfilled == [] and [(r.state, r.progress_percent) for r in halfway.readiness] == [
        ("computing", 50)
    ]

    reports = first_part + _run_units(evaluator, plan.units[1:], NOW)
    done = evaluator.finish(plan, reports, NOW)
    assert len(reports) > PARTS, "a part larger than the bound continues in follow-up units"
    assert max(r.most_unit_rows for r in reports) == BOUND and done.backfill_rows == USERS
    assert store.most_read <= BOUND and done.most_unit_rollups <= BOUND
    assert set(store.writes.values()) == {1} and len(store.writes) == USERS
    assert done.backfilled == [rule.series] and [r.state for r in done.readiness] == ["ready"]
    assert (done.ready, done.not_ready) == (USERS, 0)

    # The next plan sweeps the series (its other users, and backfills the result lacks): no write.
    sweep = evaluator.plan(NOW + timedelta(hours=1))
    assert {u.mode for u in sweep.units} == {SWEEP}
    evaluator.finish(sweep, _run_units(evaluator, sweep.units, NOW + timedelta(hours=1)), NOW)
    assert set(store.writes.values()) == {1}

    # The same histories as the whole scan holds at once.
    ruleset = RulesetTable(dynamodb, RULESET_TABLE).current()
    tasks = backfill_tasks(
        plan_series(ruleset, NOW.date()), {}, NOW.date(), NOW, oldest=NOW.date() - timedelta(400)
    )
    expected = {
        user: dict(history.days)
        for unit in ArchiveScan(archive).histories(tasks, load_zone("UTC"))
        for user, history in unit.histories.items()
    }
    assert {user: days for user, (days, _, _) in _stored(dynamodb, rule.series).items()} == expected


@pytest.mark.parametrize("die_after", [1, 2])
def test_a_unit_killed_after_a_commit_and_run_again_sends_each_action_once(
    dynamodb: Any, die_after: int
) -> None:
    rule = _rule(dynamodb)
    archive = _archive()
    create_table(dynamodb, "pia-timeseries-clean", ttl=True)
    clean_target, crashed_target = Recorder(), Recorder()
    clean, _, _ = _evaluator(dynamodb, archive, clean_target, "pia-timeseries-clean")
    clean.run(NOW)

    evaluator, store, _ = _evaluator(dynamodb, archive, crashed_target)
    plan = evaluator.plan(NOW)
    store.die_after_commit = die_after
    with pytest.raises(RuntimeError, match="killed"):
        _run_units(evaluator, plan.units[:1], NOW)
    reports = _run_units(evaluator, plan.units, NOW)  # Step Functions runs the unit again
    evaluator.finish(plan, reports, NOW)
    evaluator.run(NOW + timedelta(hours=1))  # recovery sends what the killed unit owed

    assert _stored(dynamodb, rule.series) == _stored(dynamodb, rule.series, "pia-timeseries-clean")
    sent = Counter((a.user_id, a.value) for a in crashed_target.sent)
    assert set(sent.values()) == {1} and {value for _, value in sent} == {READY}
    assert sent == Counter((a.user_id, a.value) for a in clean_target.sent)


def test_a_run_killed_before_its_finish_merges_the_backfill_again_and_sends_nothing_twice(
    dynamodb: Any,
) -> None:
    rule = _rule(dynamodb)
    archive = _archive()
    target = Recorder()
    evaluator, _, _ = _evaluator(dynamodb, archive, target)
    plan = evaluator.plan(NOW)
    _run_units(evaluator, plan.units, NOW)  # every part merged, then the run died: no finish

    again = evaluator.run(NOW + timedelta(hours=1))

    assert again.backfilled == [rule.series] and again.backfill_rows == again.rollups_read - USERS == USERS
    assert (again.ready, again.not_ready) == (0, 0)
    assert sorted(a.user_id for a in target.sent) == [f"user-{u:02d}" for u in range(USERS)]


def test_a_user_the_new_backfill_no_longer_finds_loses_the_old_one_in_the_sweep(dynamodb: Any) -> None:
    rule = _rule(dynamodb)
    archive = _archive(lonely="user-07")
    target = Recorder()
    evaluator, _, _ = _evaluator(dynamodb, archive, target)
    provisional = datetime(2026, 3, 10, 0, 30, tzinfo=UTC)
    first = evaluator.run(provisional)
    assert first.backfilled == [rule.series] and _stored(dynamodb, rule.series)["user-07"][0]

    # The lonely user's archive object is gone (expired) before the final backfill.
    _, lonely = sorted(archive.keys())
    boto3.client("s3", region_name="us-east-1").delete_object(Bucket=BUCKET, Key=lonely)
    final = evaluator.run(provisional + timedelta(hours=2))

    assert final.backfilled == [rule.series]
    days, sent, _ = _stored(dynamodb, rule.series)["user-07"]
    assert days == {} and sent == {rule.rule_id: NOT_READY}
    assert [(a.user_id, a.value) for a in target.sent if a.value == NOT_READY] == [("user-07", NOT_READY)]


def test_a_closed_rule_gets_its_final_evaluation_in_the_sweep_after_its_backfill_lands(
    dynamodb: Any,
) -> None:
    """The backfill units evaluate only the users the history holds: marking the rule final there
    would leave its other users without their final evaluation for good."""
    row = date_row("greater", "0", event="purchase", start="2026-03-03", finish="2026-03-10")
    (rule,) = publish(dynamodb, [row], ACTIVATION, datetime(2026, 3, 9, tzinfo=UTC)).rules
    use_partitions(dynamodb, {rule.series: PARTS})
    evaluator, _, _ = _evaluator(dynamodb, _archive(), None)

    landing = evaluator.plan(NOW)
    assert landing.closing == (rule.rule_id,) and {u.mode for u in landing.units} == {BACKFILL}
    landed = evaluator.finish(landing, _run_units(evaluator, landing.units, NOW), NOW)
    assert landed.backfilled == [rule.series] and landed.finalized == []

    sweep = evaluator.plan(NOW + timedelta(hours=1))
    assert {u.mode for u in sweep.units} == {SWEEP} and sweep.closing == (rule.rule_id,)
    swept = evaluator.finish(sweep, _run_units(evaluator, sweep.units, NOW), NOW + timedelta(hours=1))
    assert swept.finalized == [rule.rule_id]
