"""The backfill on Amazon Athena: one ``UNLOAD`` of the backfill query, read back in units.

The query runs in the stack's workgroup against the Glue table over the raw event archive; partition
projection turns its ``datehour >= ...`` condition into the list of hour prefixes to read, so Athena
scans only the window. ``UNLOAD`` writes one JSON line per (series, user) under a prefix of the
results bucket that is new for every run (``UNLOAD`` refuses a prefix that holds data); the
evaluator then reads those objects one at a time and merges them into rollups in units of whole
users, so its memory is bounded by one result object and one unit, not by the archive.

A query that has not finished within ``max_wait_seconds`` is left running and the backfill waits for
the next run, which finds the query in the ledger (an item of the time-series table, keyed by the
query's text and whether the history is final) and reads its results instead of starting it again:
a scan longer than one invocation still completes, over several runs. Without a ledger the query is
cancelled and the next run starts it afresh.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from pia.timeseries.backfill import (
    DEFAULT_UNIT_USERS,
    BackfillFailed,
    BackfillStats,
    BackfillTask,
    HistoryUnit,
)
from pia.timeseries.backfill_results import BackfillResults
from pia.timeseries.backfill_sql import RAW_EVENTS_TABLE, backfill_query, literal, units_from_rows

if TYPE_CHECKING:
    from mypy_boto3_athena import AthenaClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client

ATHENA_PATH = "athena"
RESULTS_PREFIX = "backfill/"
DEFAULT_MAX_WAIT_SECONDS = 600.0
FIRST_POLL_SECONDS = 1.0
LONGEST_POLL_SECONDS = 15.0


LEDGER_PK = "BACKFILL_QUERY"
LEDGER_TTL_SECONDS = 2 * 86_400
LEDGER_MAX_AGE_SECONDS = 12 * 3_600
"""A pending query older than this is started again: its results expire after a day."""


class QueryLedger(Protocol):
    def pending(self, key: str) -> tuple[str, str] | None: ...

    def started(self, key: str, query_id: str, prefix: str) -> None: ...

    def finished(self, key: str) -> None: ...


class PendingQueryTable:
    """Backfill queries started but not yet read: ``pk = BACKFILL_QUERY``, ``sk = <key>``, ``q`` the
    query id (empty once read), ``p`` its results prefix, ``s`` when it started, ``ttl`` two days on."""

    def __init__(
        self, client: DynamoDBClient, table_name: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._client = client
        self._table = table_name
        self._clock = clock

    def pending(self, key: str) -> tuple[str, str] | None:
        item = self._client.get_item(
            TableName=self._table, Key={"pk": {"S": LEDGER_PK}, "sk": {"S": key}}, ConsistentRead=True
        ).get("Item")
        if not item or not item.get("q", {}).get("S"):
            return None
        if self._clock() - int(item.get("s", {}).get("N", "0")) > LEDGER_MAX_AGE_SECONDS:
            return None
        return item["q"]["S"], item["p"]["S"]

    def started(self, key: str, query_id: str, prefix: str) -> None:
        self._put(key, query_id, prefix)

    def finished(self, key: str) -> None:
        self._put(key, "", "")

    def _put(self, key: str, query_id: str, prefix: str) -> None:
        self._client.put_item(
            TableName=self._table,
            Item={
                "pk": {"S": LEDGER_PK},
                "sk": {"S": key},
                "q": {"S": query_id},
                "p": {"S": prefix},
                "s": {"N": str(int(self._clock()))},
                "ttl": {"N": str(int(self._clock()) + LEDGER_TTL_SECONDS)},
            },
        )


def ledger_key(select: str, tasks: Sequence[BackfillTask]) -> str:
    """The same query for the same purpose: a provisional run never hands its result to a final one."""
    purpose = "final" if all(task.final for task in tasks) else "provisional"
    return hashlib.sha256(f"{purpose}\n{select}".encode()).hexdigest()[:32]


def unload(select: str, location: str, *, partitioned: bool = False) -> str:
    """JSON lines, compressed as the workgroup's default has it: the reader takes gzip or plain.
    ``partitioned``: under ``sx=<task>/part=<n>/``, the layout the evaluator's units read."""
    layout = ", partitioned_by = ARRAY['sx', 'part']" if partitioned else ""
    return f"UNLOAD (\n{select}) TO {literal(location)}\nWITH (format = 'JSON'{layout})"


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
        ledger: QueryLedger | None = None,
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
        self._ledger = ledger
        self._run_id = run_id
        self._sleep = sleep
        self._monotonic = monotonic
        self._stats = BackfillStats(ATHENA_PATH)

    @property
    def stats(self) -> BackfillStats:
        return self._stats

    def histories(self, tasks: Sequence[BackfillTask], zone: ZoneInfo) -> Iterator[HistoryUnit]:
        stats = self._stats = BackfillStats(ATHENA_PATH)
        key, prefix = self._query(backfill_query(tasks, zone, table=self._table), tasks, partitioned=False)
        yield from units_from_rows(self._rows(prefix, stats), stats, self._unit_users)
        if self._ledger is not None:
            self._ledger.finished(key)

    def land(
        self,
        tasks: Sequence[BackfillTask],
        zone: ZoneInfo,
        results: BackfillResults,
        parts: Mapping[str, int],
    ) -> str:
        """The query's result stays where ``UNLOAD`` wrote it, by task and part: only its counts row is
        read here, the units read the rest."""
        self._stats = BackfillStats(ATHENA_PATH)
        select = backfill_query(tasks, zone, table=self._table, parts=parts)
        key, prefix = self._query(select, tasks, partitioned=True)
        results.read_counts(prefix, self._stats)
        if self._ledger is not None:
            self._ledger.finished(key)
        return prefix

    def _query(self, select: str, tasks: Sequence[BackfillTask], *, partitioned: bool) -> tuple[str, str]:
        """Start the query (or find it in the ledger) and wait for it: its ledger key and results prefix."""
        stats = self._stats
        key = ledger_key(select, tasks)
        pending = self._ledger.pending(key) if self._ledger is not None else None
        if pending is None:
            query_id, prefix = self._start(select, partitioned=partitioned)
            stats.queries = 1
            if self._ledger is not None:
                self._ledger.started(key, query_id, prefix)
        else:
            query_id, prefix = pending
        try:
            execution = self._wait(query_id)
        except BackfillFailed:
            if self._ledger is not None and self._state(query_id) in ("FAILED", "CANCELLED"):
                self._ledger.finished(key)
            raise
        stats.bytes_scanned = execution.get("Statistics", {}).get("DataScannedInBytes", 0)
        return key, prefix

    def _start(self, select: str, *, partitioned: bool) -> tuple[str, str]:
        run = self._run_id()
        prefix = f"{RESULTS_PREFIX}{run}/"
        started = self._athena.start_query_execution(
            QueryString=unload(select, f"s3://{self._bucket}/{prefix}", partitioned=partitioned),
            ClientRequestToken=run,
            QueryExecutionContext={"Database": self._database},
            WorkGroup=self._workgroup,
        )
        return started["QueryExecutionId"], prefix

    def _state(self, query_id: str) -> str:
        execution = self._athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
        return str(execution.get("Status", {}).get("State", "QUEUED"))

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
                if self._ledger is not None:
                    raise BackfillFailed(
                        f"Athena query {query_id} still {state.lower()} after {self._max_wait:.0f} s; "
                        "the next run reads its results"
                    )
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
                for line in text.decode().split("\n"):
                    if line.strip():
                        yield json.loads(line)
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            kwargs["ContinuationToken"] = token
