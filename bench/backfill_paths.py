"""The backfill line of the scaling table: what each backfill path reads, at a few archive sizes.

One archive per size (100 users, events spread over the ten days before the series' activation,
one object per Kinesis batch of 100 records, 5% of the batches archived twice as a partial
redelivery would), one count series to backfill. Both paths run on it:
- in-Lambda: the evaluator lists the window and GETs every object, decoding every event itself;
- Athena (DuckDB standing in, the same SQL): the engine scans the same objects; the evaluator reads
  only the result, one row per (series, user), counted here as the gzip JSON lines ``UNLOAD`` writes.
Both must find the same histories (``identical`` is 1 when they do). The counts do not depend on the
machine: requests, objects, bytes, rows.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import boto3
from moto import mock_aws

from bench.moto_support import REGION
from bench.scenario import EVENT_NAME, RULE_ROW
from pia.core.events import Event
from pia.counting.aggregator import InboundRecord
from pia.counting.counters import Position
from pia.rules.table import parse_rules
from pia.timeseries.archive import RawEventArchive
from pia.timeseries.backfill import BackfillStats, BackfillTask, UserHistory
from pia.timeseries.backfill_engine import DEFAULT_LAMBDA_MAX_OBJECTS, ArchiveScan
from pia.timeseries.backfill_sql import units_from_rows
from pia.timeseries.duckdb_backfill import DuckDbBackfill
from pia.timeseries.rollups import SeriesPlan, activation_instant

SIZES = (1_000, 10_000, 100_000)
USERS = 100
BATCH = 100
DAYS = 10
REDELIVERED_EVERY = 20
ACTIVATION = "2026-10-11"
BUCKET = "pia-bench-backfill"


@dataclass(frozen=True)
class BackfillPaths:
    events: int
    archive_objects: int
    archive_bytes: int
    in_lambda_get_requests: int
    in_lambda_list_requests: int
    in_lambda_bytes_read: int
    in_lambda_events_decoded: int
    athena_queries: int
    athena_objects_scanned: int
    athena_bytes_scanned: int
    athena_result_rows: int
    athena_result_bytes: int
    evaluator_invocations: int
    in_lambda_within_threshold: int
    identical: int

    def figures(self) -> dict[str, int]:
        return asdict(self)


def _task() -> BackfillTask:
    row = {**RULE_ROW, "RuleType": "date", "StartDate": "2026-10-01", "FinishDate": "2026-10-30"}
    (rule,) = parse_rules(enumerate([row], start=2)).rules
    plan = SeriesPlan(rule.series, (rule,), ACTIVATION, activation_instant(ACTIVATION))
    return BackfillTask(plan, date(2026, 10, 1), final=True)


def _archive(s3: Any, events: int) -> RawEventArchive:
    s3.create_bucket(Bucket=BUCKET)
    archive = RawEventArchive(s3, BUCKET)
    start = datetime(2026, 10, 1, tzinfo=UTC)
    step = DAYS * 86_400 / events
    records = [
        InboundRecord(
            Position("shardId-000000000000", 10_000 + n),
            Event(
                user_id=f"user-{n % USERS:03d}",
                event_type=EVENT_NAME,
                timestamp=start + timedelta(seconds=n * step),
                attributes={},
                metrics={"clicks": Decimal(1)},
                endpoint_id=f"ep-{n % USERS:03d}",
            ),
        )
        for n in range(events)
    ]
    for b, first in enumerate(range(0, events, BATCH)):
        batch = records[first : first + BATCH]
        archive.put(batch, batch[-1].event.timestamp)
        if b % REDELIVERED_EVERY == REDELIVERED_EVERY - 1:
            archive.put(batch[BATCH // 2 :], batch[-1].event.timestamp + timedelta(hours=1))
    return archive


def _histories(units: Any) -> dict[str, dict[str, UserHistory]]:
    found: dict[str, dict[str, UserHistory]] = {}
    for unit in units:
        found.setdefault(unit.series, {}).update(unit.histories)
    return found


def measure(events: int) -> BackfillPaths:
    zone = ZoneInfo("UTC")
    task = _task()
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        calls: Counter[str] = Counter()
        s3.meta.events.register("before-call.s3.*", lambda model, **_: calls.update([model.name]))
        archive = _archive(s3, events)
        sizes = [size for _, size in archive.entries()]
        calls.clear()
        scan = ArchiveScan(archive)
        in_lambda = _histories(scan.histories([task], zone))
        lambda_calls = Counter(calls)
        duck = DuckDbBackfill(archive)
        rows = list(duck.rows([task], zone))
        stats = BackfillStats(duck.stats.path)
        on_sql = _histories(units_from_rows(iter(rows), stats, 1_000))
        unloaded = gzip.compress("\n".join(json.dumps(r, default=str) for r in rows).encode(), mtime=0)
    return BackfillPaths(
        events=events,
        archive_objects=len(sizes),
        archive_bytes=sum(sizes),
        in_lambda_get_requests=lambda_calls["GetObject"],
        in_lambda_list_requests=lambda_calls["ListObjectsV2"],
        in_lambda_bytes_read=scan.stats.bytes_read,
        in_lambda_events_decoded=scan.stats.events + scan.stats.duplicates,
        athena_queries=duck.stats.queries,
        athena_objects_scanned=duck.stats.objects_scanned,
        athena_bytes_scanned=duck.stats.bytes_scanned,
        athena_result_rows=len(rows),
        athena_result_bytes=len(unloaded),
        evaluator_invocations=1,
        in_lambda_within_threshold=int(len(sizes) <= DEFAULT_LAMBDA_MAX_OBJECTS),
        identical=int(in_lambda == on_sql and stats.events == scan.stats.events),
    )


def run_backfill_paths(sizes: tuple[int, ...] = SIZES) -> list[BackfillPaths]:
    return [measure(events) for events in sizes]
