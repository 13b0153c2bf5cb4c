"""The backfill on Amazon Athena: one ``UNLOAD`` of the backfill query, read back in units.

The query runs in the stack's workgroup against the Glue table over the raw event archive; partition
projection turns its ``datehour >= ...`` condition into the list of hour prefixes to read, so Athena
scans only the window. ``UNLOAD`` writes one JSON line per (series, user) under a prefix of the
results bucket that is new for every run (``UNLOAD`` refuses a prefix that holds data); the
evaluator then reads those objects one at a time and merges them into rollups in units of whole
users, so its memory is bounded by one result object and one unit, not by the archive.

A query that has not finished within ``max_wait_seconds`` is cancelled and the backfill fails for
this run: nothing is recorded, so the next run starts it again.
"""

from __future__ import annotations

import gzip
import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from pia.timeseries.backfill import (
    DEFAULT_UNIT_USERS,
    BackfillFailed,
    BackfillStats,
    BackfillTask,
    HistoryUnit,
)
from pia.timeseries.backfill_sql import RAW_EVENTS_TABLE, backfill_query, literal, units_from_rows

if TYPE_CHECKING:
    from mypy_boto3_athena import AthenaClient
    from mypy_boto3_s3 import S3Client

ATHENA_PATH = "athena"
RESULTS_PREFIX = "backfill/"
DEFAULT_MAX_WAIT_SECONDS = 600.0
FIRST_POLL_SECONDS = 1.0
LONGEST_POLL_SECONDS = 15.0


def unload(select: str, location: str) -> str:
    """JSON lines, compressed as the workgroup's default has it: the reader takes gzip or plain."""
    return f"UNLOAD (\n{select}) TO {literal(location)}\nWITH (format = 'JSON')"


class AthenaBackfill:
    def __init__(
        self,
        athena: AthenaClient,
        s3: S3Client,
        *,
        workgroup: str,
        database: str,
        results_bucket: str,
        table: str = RAW_EVENTS_TABLE,
        unit_users: int = DEFAULT_UNIT_USERS,
        max_wait_seconds: float = DEFAULT_MAX_WAIT_SECONDS,
        run_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._athena = athena
        self._s3 = s3
        self._workgroup = workgroup
        self._database = database
        self._bucket = results_bucket
        self._table = table
        self._unit_users = unit_users
        self._max_wait = max_wait_seconds
        self._run_id = run_id
        self._sleep = sleep
        self._monotonic = monotonic
        self._stats = BackfillStats(ATHENA_PATH)

    @property
    def stats(self) -> BackfillStats:
        return self._stats

    def histories(self, tasks: Sequence[BackfillTask], zone: ZoneInfo) -> Iterator[HistoryUnit]:
        stats = self._stats = BackfillStats(ATHENA_PATH, queries=1)
        run = self._run_id()
        prefix = f"{RESULTS_PREFIX}{run}/"
        query = unload(backfill_query(tasks, zone, table=self._table), f"s3://{self._bucket}/{prefix}")
        started = self._athena.start_query_execution(
            QueryString=query,
            ClientRequestToken=run,
            QueryExecutionContext={"Database": self._database},
            WorkGroup=self._workgroup,
        )
        execution = self._wait(started["QueryExecutionId"])
        stats.bytes_scanned = execution.get("Statistics", {}).get("DataScannedInBytes", 0)
        yield from units_from_rows(self._rows(prefix, stats), stats, self._unit_users)

    def _wait(self, query_id: str) -> Any:
        deadline = self._monotonic() + self._max_wait
        pause = FIRST_POLL_SECONDS
        while True:
            execution = self._athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
            status = execution.get("Status", {})
            state = status.get("State", "QUEUED")
            if state == "SUCCEEDED":
                return execution
            if state in ("FAILED", "CANCELLED"):
                reason = status.get("StateChangeReason", state.lower())
                raise BackfillFailed(f"Athena query {query_id}: {reason}")
            if self._monotonic() + pause > deadline:
                self._athena.stop_query_execution(QueryExecutionId=query_id)
                raise BackfillFailed(
                    f"Athena query {query_id} still {state.lower()} after {self._max_wait:.0f} s; "
                    "cancelled, the next run starts it again"
                )
            self._sleep(pause)
            pause = min(pause * 2, LONGEST_POLL_SECONDS)

    def _rows(self, prefix: str, stats: BackfillStats) -> Iterator[dict[str, object]]:
        """One result object in memory at a time; Athena's own metadata files are not results."""
        kwargs: dict[str, Any] = {"Bucket": self._bucket, "Prefix": prefix}
        while True:
            page = self._s3.list_objects_v2(**kwargs)
            for entry in page.get("Contents", []):
                key = entry["Key"]
                if key.endswith(("/", ".metadata", "manifest.csv")):
                    continue
                body = self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read()
                stats.objects_read += 1
                stats.bytes_read += len(body)
                text = gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body
                for line in text.decode().splitlines():
                    if line.strip():
                        yield json.loads(line)
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            kwargs["ContinuationToken"] = token
