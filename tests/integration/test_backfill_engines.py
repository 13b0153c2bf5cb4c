"""The two backfill paths on one archive: the evaluator's own scan and the Athena SQL (run by DuckDB)
must give the same histories and, through the evaluator, the same rollups."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import boto3
import pytest

from pia.core.events import Event
from pia.counting.aggregator import InboundRecord
from pia.counting.counters import Position
from pia.rules.ruleset import RulesetTable
from pia.rules.table import parse_rules
from pia.timeseries.archive import RawEventArchive
from pia.timeseries.backfill import BackfillEngine, BackfillTask, UserHistory
from pia.timeseries.backfill_engine import ArchiveScan, LambdaLimit, SizedBackfill
from pia.timeseries.backfill_results import BackfillResults, S3Objects
from pia.timeseries.duckdb_backfill import DuckDbBackfill
from pia.timeseries.evaluator import Evaluator
from pia.timeseries.rollups import SeriesPlan, activation_instant
from pia.timeseries.store import CoverageTable, RollupStore
from tests.conftest import RULESET_TABLE, TIMESERIES_TABLE, create_table
from tests.integration.timeseries_support import date_row, publish

BUCKET = "pia-raw-events-test"
ACTIVATION = "2026-03-10"
STARTS = activation_instant(ACTIVATION)
QUOTED = "it's"
METRIC_TEXTS = ("1", "2.5", "0.000000001", "1E+2", "0.1234567891234", "-3", "1234567890123", "7.10")


def _rows() -> list[dict[str, str]]:
    return [
        date_row("greater", "0", event="purchase", start="2026-03-03", finish="2026-03-31"),
        date_row(
            "na",
            "999",
            "greater",
            "1",
            event="purchase",
            start="2026-03-05",
            finish="2026-03-31",
            attribute=("category", QUOTED),
            MetricName="price",
        ),
        date_row("na", "999", "greater", "1", event="level_up", start="2026-03-04", finish="2026-03-31"),
        # An average reads only the events carrying the metric: 10% of the purchases have none.
        date_row("na", "999", "greater", "1", MetricName="price", Aggregate="avg", OutputName="trk_date_avg"),
    ]


def _tasks(zone: ZoneInfo) -> list[BackfillTask]:
    parsed = parse_rules(enumerate(_rows(), start=2))
    assert not parsed.errors
    first_days = {"purchase": date(2026, 3, 3), f"purchase|category={QUOTED}#price": date(2026, 3, 5)}
    return [
        BackfillTask(
            SeriesPlan(rule.series, (rule,), ACTIVATION, STARTS),
            first_days.get(rule.series, date(2026, 3, 4)),
            final=True,
        )
        for rule in parsed.rules
    ]


def _edges(zone: ZoneInfo) -> list[datetime]:
    """Instants a wrong engine would date or cut differently: local midnights of the first days, the
    activation, each a microsecond and a millisecond either side."""
    instants = [STARTS]
    for day in (date(2026, 3, 3), date(2026, 3, 4), date(2026, 3, 5)):
        instants.append(datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC))
    return [
        moment + timedelta(microseconds=shift) for moment in instants for shift in (-1000, -1, 0, 1, 1000)
    ]


def _archive(s3: Any, zone: ZoneInfo, seed: int) -> RawEventArchive:
    """Batches from two shards, a redelivered part of a batch (the same positions in a new object,
    hours later), producer resends (one event_id at new positions), metrics in every form, and more
    endpoints per user than a rollup keeps."""
    rng = random.Random(seed)
    s3.create_bucket(Bucket=BUCKET)
    archive = RawEventArchive(s3, BUCKET)
    edges = _edges(zone)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    records: list[InboundRecord] = []
    for n in range(1000):
        if rng.random() < 0.3:
            moment = rng.choice(edges)
        else:
            moment = start + timedelta(seconds=rng.randrange(12 * 86_400), microseconds=rng.randrange(10**6))
        name = rng.choice(("purchase", "purchase", "level_up", "other"))
        metrics = {"price": Decimal(rng.choice(METRIC_TEXTS))}
        if rng.random() < 0.3:
            metrics["seconds"] = Decimal(rng.choice(METRIC_TEXTS))
        if rng.random() < 0.1:
            metrics = {}
        attributes = {"category": rng.choice((QUOTED, "books"))} if rng.random() < 0.7 else {}
        user = f"user-{rng.randrange(8)}"
        event = Event(
            user_id=user,
            event_type=name,
            timestamp=moment,
            attributes=attributes,
            metrics=metrics,
            endpoint_id=f"ep-{rng.randrange(20)}" if rng.random() < 0.8 else None,
            event_id=f"id-{rng.randrange(150)}" if rng.random() < 0.5 else None,
        )
        shard = n % 2
        records.append(InboundRecord(Position(f"shardId-{shard:012d}", 1000 + n), event))
    for shard in (0, 1):
        mine = [r for r in records if r.position.lane.endswith(str(shard))]
        for b in range(0, len(mine), 50):
            processed = max(start, min(r.event.timestamp for r in mine[b : b + 50])) + timedelta(hours=b % 7)
            archive.put(mine[b : b + 50], processed)
    redelivered = records[100:140]
    archive.put(redelivered, start + timedelta(days=11, hours=5))
    resent = [
        InboundRecord(Position("shardId-000000000001", 90_000 + i), r.event)
        for i, r in enumerate(records[200:230])
        if r.event.event_id is not None
    ]
    archive.put(resent, start + timedelta(days=11, hours=6))
    return archive


def _collect(engine: BackfillEngine, tasks: list[BackfillTask], zone: ZoneInfo) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, UserHistory]] = {}
    for unit in engine.histories(tasks, zone):
        assert len(unit.histories) <= 7
        mine = found.setdefault(unit.series, {})
        assert not set(mine) & set(unit.histories), "a user split across units"
        mine.update(unit.histories)
    return {
        series: {user: (h.days, h.endpoints) for user, h in users.items()} for series, users in found.items()
    }


@pytest.mark.parametrize(
    ("zone_name", "seed"), [("UTC", 1), ("Pacific/Kiritimati", 2), ("America/St_Johns", 3)]
)
def test_the_sql_path_finds_the_same_histories_as_the_in_lambda_path(
    aws: None, zone_name: str, seed: int
) -> None:
    zone = ZoneInfo(zone_name)
    archive = _archive(boto3.client("s3", region_name="us-east-1"), zone, seed)
    tasks = _tasks(zone)
    scan, duck = ArchiveScan(archive, unit_users=7), DuckDbBackfill(archive, unit_users=7)

    expected = _collect(scan, tasks, zone)
    found = _collect(duck, tasks, zone)

    assert found == expected
    assert sum(len(users) for users in expected.values()) > 15
    assert (duck.stats.events, duck.stats.duplicates) == (scan.stats.events, scan.stats.duplicates)
    assert scan.stats.duplicates > 40
    sums = {t for users in expected.values() for days, _ in users.values() for t in days.values()}
    assert any(t.total != t.total.to_integral_value() for t in sums)
    assert any(len(endpoints) == 15 for users in expected.values() for _, endpoints in users.values())


def test_a_backfill_on_an_empty_window_finds_nothing_on_either_path(aws: None) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    archive = RawEventArchive(s3, BUCKET)
    tasks = _tasks(ZoneInfo("UTC"))
    duck = DuckDbBackfill(archive)

    assert list(duck.histories(tasks, ZoneInfo("UTC"))) == []
    assert list(ArchiveScan(archive).histories(tasks, ZoneInfo("UTC"))) == []
    assert (duck.stats.events, duck.stats.objects_scanned) == (0, 0)


def _evaluator(
    dynamodb: Any,
    archive: RawEventArchive,
    engine: BackfillEngine,
    zone: ZoneInfo,
    table: str = TIMESERIES_TABLE,
    results: BackfillResults | None = None,
) -> Evaluator:
    """The evaluator as the handler wires it, on ``table``, with no action target (nothing is sent)."""
    return Evaluator(
        RulesetTable(dynamodb, RULESET_TABLE).current,
        RollupStore(dynamodb, table),
        CoverageTable(dynamodb, table),
        [],
        zone=zone,
        retention_days=400,
        archive=archive,
        backfill=engine,
        results=results,
    )


def _evaluate(dynamodb: Any, archive: RawEventArchive, engine: BackfillEngine, table: str) -> dict[str, Any]:
    evaluator = _evaluator(dynamodb, archive, engine, ZoneInfo("Pacific/Kiritimati"), table)
    report = evaluator.run(datetime(2026, 3, 12, 12, tzinfo=UTC))
    assert not report.failures
    store = RollupStore(dynamodb, table)
    rollups = {
        r.key: (r.backfill, r.endpoints, r.backfill_activation)
        for task in _tasks(ZoneInfo("UTC"))
        for r in store.series_rollups(task.plan.series)
    }
    return {"rollups": rollups, "summary": report.summary()}


def test_both_paths_leave_the_same_rollups_through_the_evaluator(dynamodb: Any) -> None:
    zone = ZoneInfo("Pacific/Kiritimati")
    archive = _archive(boto3.client("s3", region_name="us-east-1"), zone, seed=4)
    publish(dynamodb, _rows(), ACTIVATION, datetime(2026, 3, 9, tzinfo=UTC))
    create_table(dynamodb, "pia-timeseries-sql", ttl=True)

    in_lambda = _evaluate(dynamodb, archive, ArchiveScan(archive), TIMESERIES_TABLE)
    routed = SizedBackfill(
        archive, ArchiveScan(archive), DuckDbBackfill(archive, unit_users=5), LambdaLimit(3)
    )
    on_sql = _evaluate(dynamodb, archive, routed, "pia-timeseries-sql")

    assert on_sql["rollups"] == in_lambda["rollups"] and len(in_lambda["rollups"]) > 15
    assert in_lambda["summary"]["backfill_path"] == "in-lambda"
    assert on_sql["summary"]["backfill_path"] == "athena-sql-on-duckdb"
    for key in ("backfilled", "backfill_events", "ready", "not_ready"):
        assert on_sql["summary"][key] == in_lambda["summary"][key], key


RESULTS = "pia-backfill-results-test"
RUN = "run-1".rjust(32, "0")
WORKGROUP = "pia-backfill"


def _athena(s3: Any) -> tuple[Any, list[dict[str, Any]]]:
    athena = boto3.client("athena", region_name="us-east-1")
    athena.create_work_group(Name=WORKGROUP, Configuration={})
    s3.create_bucket(Bucket=RESULTS)
    sent: list[dict[str, Any]] = []
    athena.meta.events.register(
        "provide-client-params.athena.StartQueryExecution", lambda params, **_: sent.append(dict(params))
    )
    return athena, sent


def _unloaded(rows: list[dict[str, object]], parts: int = 3) -> list[bytes]:
    """The rows as Athena's UNLOAD writes them: gzip JSON lines, split across files in no order."""
    import gzip
    import json

    return [
        gzip.compress("\n".join(json.dumps(row, default=str) for row in rows[n::parts]).encode())
        for n in range(parts)
    ]


def _unloaded_by_part(s3: Any, prefix: str, rows: list[dict[str, object]]) -> None:
    """The rows as a partitioned UNLOAD writes them: under ``sx=/part=``, without those columns."""
    import gzip
    import json

    files: dict[str, list[str]] = {}
    for row in rows:
        where = f"{prefix}sx={row.pop('sx')}/part={row.pop('part')}/"
        files.setdefault(where, []).append(json.dumps(row, default=str))
    for where, lines in files.items():
        s3.put_object(
            Bucket=RESULTS, Key=f"{where}20261130_0.gz", Body=gzip.compress("\n".join(lines).encode())
        )


def test_the_athena_adapter_unloads_the_query_and_reads_it_back_in_units(aws: None) -> None:
    zone = ZoneInfo("America/St_Johns")
    s3 = boto3.client("s3", region_name="us-east-1")
    archive = _archive(s3, zone, seed=5)
    tasks = _tasks(zone)
    athena, sent = _athena(s3)
    duck = DuckDbBackfill(archive, unit_users=7)
    for n, body in enumerate(_unloaded(list(duck.rows(tasks, zone)))):
        s3.put_object(Bucket=RESULTS, Key=f"backfill/{RUN}/part-{n}.gz", Body=body)
    from pia.timeseries.athena_backfill import AthenaBackfill

    engine = AthenaBackfill(
        athena,
        s3,
        workgroup=WORKGROUP,
        database="pia_raw",
        results_bucket=RESULTS,
        unit_users=7,
        run_id=lambda: RUN,
        sleep=lambda _: None,
    )

    assert _collect(engine, tasks, zone) == _collect(ArchiveScan(archive, unit_users=7), tasks, zone)
    (query,) = sent
    assert (query["WorkGroup"], query["QueryExecutionContext"]["Database"]) == (WORKGROUP, "pia_raw")
    assert query["QueryString"].startswith("UNLOAD (\nWITH lines AS")
    assert f"TO 's3://{RESULTS}/backfill/{RUN}/'" in query["QueryString"]
    assert "category') = 'it''s'" in query["QueryString"]
    assert (engine.stats.path, engine.stats.queries, engine.stats.objects_read) == ("athena", 1, 3)


class _StuckAthena:
    """An Athena client whose query never leaves RUNNING, or ends FAILED."""

    def __init__(self, state: str) -> None:
        self.state = state
        self.stopped: list[str] = []
        self.started: list[str] = []

    def start_query_execution(self, **params: Any) -> dict[str, Any]:
        self.started.append(params["QueryString"])
        return {"QueryExecutionId": f"q-{len(self.started)}"}

    def get_query_execution(self, QueryExecutionId: str) -> dict[str, Any]:
        return {"QueryExecution": {"Status": {"State": self.state, "StateChangeReason": "HIVE_BAD_DATA"}}}

    def stop_query_execution(self, QueryExecutionId: str) -> None:
        self.stopped.append(QueryExecutionId)


@pytest.mark.parametrize("state", ["RUNNING", "FAILED"])
def test_an_athena_query_that_fails_or_overruns_leaves_its_series_for_the_next_run(
    dynamodb: Any, state: str
) -> None:
    from pia.timeseries.athena_backfill import AthenaBackfill

    zone = ZoneInfo("UTC")
    archive = _archive(boto3.client("s3", region_name="us-east-1"), zone, seed=6)
    publish(dynamodb, _rows(), ACTIVATION, datetime(2026, 3, 9, tzinfo=UTC))
    clock = iter(range(0, 10_000, 5))
    athena = _StuckAthena(state)
    engine = AthenaBackfill(
        athena,
        boto3.client("s3", region_name="us-east-1"),  # type: ignore[arg-type]
        workgroup=WORKGROUP,
        database="pia_raw",
        results_bucket=RESULTS,
        max_wait_seconds=60,
        sleep=lambda _: None,
        monotonic=lambda: float(next(clock)),
    )
    evaluator = _evaluator(dynamodb, archive, engine, zone)

    report = evaluator.run(datetime(2026, 3, 12, 12, tzinfo=UTC))

    assert report.backfilled == [] and report.ready == 0
    assert ("HIVE_BAD_DATA" if state == "FAILED" else "still running") in report.failures["backfill"]
    assert athena.stopped == ([] if state == "FAILED" else ["q-1"])
    assert CoverageTable(dynamodb, TIMESERIES_TABLE).all() == {}


def test_a_query_longer_than_one_run_is_read_by_the_next_run_not_started_again(dynamodb: Any) -> None:
    from pia.timeseries.athena_backfill import AthenaBackfill, PendingQueryTable

    zone = ZoneInfo("UTC")
    s3 = boto3.client("s3", region_name="us-east-1")
    archive = _archive(s3, zone, seed=7)
    s3.create_bucket(Bucket=RESULTS)
    publish(dynamodb, _rows(), ACTIVATION, datetime(2026, 3, 9, tzinfo=UTC))
    athena = _StuckAthena("RUNNING")
    runs = iter(["first".rjust(32, "0"), "second".rjust(32, "0")])
    clock = [1_800_000_000.0]
    ticks = iter(range(0, 100_000, 5))
    engine = AthenaBackfill(
        athena,  # type: ignore[arg-type]
        s3,
        workgroup=WORKGROUP,
        database="pia_raw",
        results_bucket=RESULTS,
        max_wait_seconds=60,
        ledger=PendingQueryTable(dynamodb, TIMESERIES_TABLE, clock=lambda: clock[0]),
        run_id=lambda: next(runs),
        sleep=lambda _: None,
        monotonic=lambda: float(next(ticks)),
    )
    evaluator = _evaluator(dynamodb, archive, engine, zone, results=BackfillResults(S3Objects(s3, RESULTS)))

    first = evaluator.run(datetime(2026, 3, 12, 12, tzinfo=UTC))
    assert "the next run reads its results" in first.failures["backfill"] and athena.stopped == []
    progress = [
        (r["row"], r["state"], r["progress_percent"], r["archive_hours_done"], r["archive_hours"])
        for r in first.summary()["readiness"]  # type: ignore[union-attr]
    ]
    # From the first day each window reaches (3, 5, 4 and 1 March) to the activation, 10 March 00:00.
    assert progress == [
        (2, "computing", 0, 0, 168),
        (3, "computing", 0, 0, 120),
        (4, "computing", 0, 0, 144),
        (5, "computing", 0, 0, 216),
    ]
    assert all("still running" in r.message for r in first.readiness)

    tasks = _tasks(zone)
    layout = RulesetTable(dynamodb, RULESET_TABLE).current().series_partitions
    parts = {t.plan.series: layout.get(t.plan.series, 16) for t in tasks}
    rows = list(DuckDbBackfill(archive).rows(tasks, zone, parts=parts))
    _unloaded_by_part(s3, f"backfill/{'first'.rjust(32, '0')}/", rows)
    athena.state = "SUCCEEDED"
    clock[0] += 3_600
    second = evaluator.run(datetime(2026, 3, 12, 13, tzinfo=UTC))

    assert len(athena.started) == 1 and not second.failures
    assert [(r.row, r.state, r.progress_percent) for r in second.readiness] == [
        (2, "ready", 100),
        (3, "ready", 100),
        (4, "ready", 100),
        (5, "ready", 100),
    ]
    assert sorted(second.backfilled) == sorted(t.plan.series for t in tasks)
    scan = ArchiveScan(archive, unit_users=7)
    expected = _collect(scan, tasks, zone)
    assert second.backfill_events == scan.stats.events
    store = RollupStore(dynamodb, TIMESERIES_TABLE)
    stored = {
        task.plan.series: {
            r.user_id: (dict(r.backfill), r.endpoints) for r in store.series_rollups(task.plan.series)
        }
        for task in tasks
    }
    assert stored == expected


def test_a_pending_query_older_than_its_results_is_started_afresh(dynamodb: Any) -> None:
    from pia.timeseries.athena_backfill import PendingQueryTable

    clock = [1_800_000_000.0]
    ledger = PendingQueryTable(dynamodb, TIMESERIES_TABLE, clock=lambda: clock[0])
    ledger.started("k", "q-1", "backfill/run/")

    assert ledger.pending("k") == ("q-1", "backfill/run/")
    clock[0] += 13 * 3_600
    assert ledger.pending("k") is None
    clock[0] -= 13 * 3_600
    ledger.finished("k")
    assert ledger.pending("k") is None


def test_results_without_their_counts_row_are_not_taken_as_a_complete_backfill() -> None:
    from pia.timeseries.backfill import BackfillFailed, BackfillStats
    from pia.timeseries.backfill_sql import units_from_rows

    rows = [{"series": "s", "user_id": "amy", "days": ["2026-03-01 1 0"], "endpoints": None}]

    with pytest.raises(BackfillFailed, match="incomplete"):
        list(units_from_rows(iter(rows), BackfillStats(), 10))


def test_unloaded_rows_holding_a_unicode_line_break_read_back_whole(aws: None) -> None:
    """Athena writes U+2028 and U+0085 inside a JSON text as they are; only ``\\n`` ends a row."""
    from pia.timeseries.athena_backfill import AthenaBackfill

    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=RESULTS)
    rows = [
        {"series": "s", "user_id": "amy\u2028\x85", "days": ["2026-03-05 1 0"], "endpoints": ["ep\u2029"]},
        {"series": "", "user_id": None, "days": ["1", "1", "0"], "endpoints": None},
    ]
    import gzip
    import json

    body = gzip.compress("\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode())
    s3.put_object(Bucket=RESULTS, Key=f"backfill/{RUN}/part-0.gz", Body=body)
    engine = AthenaBackfill(
        _StuckAthena("SUCCEEDED"),  # type: ignore[arg-type]
        s3,
        workgroup=WORKGROUP,
        database="pia_raw",
        results_bucket=RESULTS,
        run_id=lambda: RUN,
        sleep=lambda _: None,
    )

    (unit,) = engine.histories(_tasks(ZoneInfo("UTC")), ZoneInfo("UTC"))

    assert list(unit.histories) == ["amy\u2028\x85"]
    assert unit.histories["amy\u2028\x85"].endpoints == ("ep\u2029",)
