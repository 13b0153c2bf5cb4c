"""The raw event archive: its format (one gzip-compressed JSON-lines object per Kinesis batch) and its
bucket.

Every custom event the aggregator accepts is kept, so a rule added later (a new attribute filter, an
older start date) can be backfilled within the retention. Keys start with the UTC hour the batch was
processed (``raw/YYYY/MM/DD/HH/``): a backfill lists only the hours that can hold its days, and the
seen-values summary walks the archive hour by hour. The rest of the key is derived from the batch's
records, so a batch delivered again whole overwrites its object; a partial redelivery writes a new
object, and since every line carries its lane and sequence number, readers drop the duplicates.

The aggregator archives every batch while a bucket is configured, date rule or not, so this module
loads without the rest of the time-series path (``tests/unit/core/test_pure_imports.py``).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from pia.core.events import Event, EventFormat, parse_metric, parse_timestamp
from pia.counting.aggregator import ExtensionOutcome, InboundRecord
from pia.counting.counters import Position

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PREFIX = "raw/"


def hour_prefix(moment: datetime) -> str:
    return f"{PREFIX}{moment.astimezone(UTC):%Y/%m/%d/%H}/"


def listing_start(day: date) -> str:
    """A ``StartAfter`` key that lists every object processed on ``day`` (UTC) or later."""
    return f"{PREFIX}{day:%Y/%m/%d}"


def object_key(records: Sequence[InboundRecord], now: datetime) -> str:
    positions = [r.position for r in records]
    first = min(positions, key=lambda p: p.sequence)
    tokens = sorted(f"{p.lane}/{p.sequence:0130d}" for p in positions)
    digest = hashlib.sha256("\n".join(tokens).encode()).hexdigest()[:12]
    shard = first.lane.split("/", 1)[0]
    return f"{hour_prefix(now)}{shard}-{first.sequence}-{digest}.jsonl.gz"


def _line(record: InboundRecord) -> dict[str, Any]:
    event = record.event
    line: dict[str, Any] = {
        "l": record.position.lane,
        "q": str(record.position.sequence),
        "u": event.user_id,
        "e": event.event_type,
        "t": event.timestamp.isoformat(),
    }
    if event.attributes:
        line["a"] = dict(event.attributes)
    if event.metrics:
        line["m"] = {name: str(value) for name, value in event.metrics.items()}
    if event.endpoint_id is not None:
        line["p"] = event.endpoint_id
    if event.event_id is not None:
        line["i"] = event.event_id
    if event.format is not EventFormat.PINPOINT:
        line["f"] = event.format.value
    return line


def encode(records: Sequence[InboundRecord]) -> bytes:
    text = "\n".join(json.dumps(_line(r), separators=(",", ":"), ensure_ascii=False) for r in records)
    return gzip.compress(text.encode(), mtime=0)


@dataclass(frozen=True)
class RawObject:
    events: tuple[tuple[Position, Event], ...]
    bad_lines: int = 0


def _event(line: dict[str, Any]) -> tuple[Position, Event]:
    """Dates and metrics pass the parser's checks again: a line archived before a bound existed (an
    event dated in year 9999) must not reach the backfill's date arithmetic."""
    event = Event(
        user_id=line["u"],
        event_type=line["e"],
        timestamp=parse_timestamp(line["t"], "t"),
        attributes=dict(line.get("a", {})),
        metrics={
            name: parse_metric(Decimal(value), f"m.{name}") for name, value in line.get("m", {}).items()
        },
        endpoint_id=line.get("p"),
        event_id=line.get("i"),
        format=EventFormat(line.get("f", EventFormat.PINPOINT.value)),
    )
    return Position(line["l"], int(line["q"])), event


def decode(data: bytes) -> RawObject:
    """Lines that cannot be read are counted, never fatal: one damaged line must not hide the rest."""
    events: list[tuple[Position, Event]] = []
    bad = 0
    for raw in _lines(data):
        try:
            events.append(_event(json.loads(raw)))
        except (ValueError, KeyError, TypeError, ArithmeticError):
            bad += 1
    return RawObject(tuple(events), bad)


def _lines(data: bytes) -> Iterator[str]:
    """Lines end at ``\n`` only, as for Athena and DuckDB: ``str.splitlines`` would also cut at
    U+0085, U+2028 and other breaks that ``json.dumps(ensure_ascii=False)`` leaves inside a text."""
    for line in gzip.decompress(data).decode().split("\n"):
        if line.strip():
            yield line


class ArchivePort(Protocol):
    def put(self, records: Sequence[InboundRecord], now: datetime) -> str: ...


class RawEventArchive:
    """The raw events bucket: one object per batch under ``raw/``, expired by the bucket's lifecycle."""

    def __init__(self, client: S3Client, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    def put(self, records: Sequence[InboundRecord], now: datetime) -> str:
        key = object_key(records, now)
        self._client.put_object(
            Bucket=self._bucket,
            Key=key,
            Body=encode(records),
            ContentType="application/gzip",
        )
        return key

    def keys(self, *, start_after: str = "", prefix: str = "raw/", page_size: int = 1000) -> Iterator[str]:
        for key, _ in self.entries(start_after=start_after, prefix=prefix, page_size=page_size):
            yield key

    def entries(
        self, *, start_after: str = "", prefix: str = "raw/", page_size: int = 1000
    ) -> Iterator[tuple[str, int]]:
        """Keys and sizes in order, following every continuation token (a page holds at most 1,000)."""
        kwargs: dict[str, Any] = {"Bucket": self._bucket, "Prefix": prefix, "MaxKeys": page_size}
        if start_after:
            kwargs["StartAfter"] = start_after
        while True:
            page = self._client.list_objects_v2(**kwargs)
            for entry in page.get("Contents", []):
                yield entry["Key"], entry.get("Size", 0)
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            kwargs.pop("StartAfter", None)
            kwargs["ContinuationToken"] = token

    def body(self, key: str) -> bytes:
        return self._client.get_object(Bucket=self._bucket, Key=key)["Body"].read()

    def read(self, key: str) -> RawObject:
        return decode(self.body(key))


def archive_batch(archive: ArchivePort, records: Sequence[InboundRecord], now: datetime) -> ExtensionOutcome:
    """Archive a batch before anything derived from it is written: if the put fails, every record
    fails, so Lambda redelivers the batch and the archive never misses what a rollup counted."""
    if not records:
        return ExtensionOutcome()
    try:
        archive.put(records, now)
    except Exception as exc:
        reason = f"raw event archive: {type(exc).__name__}: {exc}"
        return ExtensionOutcome(
            frozenset(r.position for r in records), {r.position.token: reason for r in records}
        )
    return ExtensionOutcome()
