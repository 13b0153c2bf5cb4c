"""A landed backfill's result, laid out by part so that units can merge it without anyone holding it.

Every engine writes the same layout under a prefix that is new for each computation (Athena's
``UNLOAD ... partitioned_by``, and the in-process engines as its stand-in):
``<prefix>sx=<task index>/part=<n>/<file>``, JSON lines of one (series, user) each, plus one counts
row under ``sx=-1/part=0/`` whose presence says the result is whole. A user's part is
:func:`result_part`, an MD5 prefix both SQL engines compute identically (the rollup store's BLAKE2b
partition has no SQL form in either), so one unit reads one part of one series, a page of at most its
bound of rows at a time, and fetches only those users' rollups by key.

The plan step reads only the counts row; the results bucket's lifecycle expires the files a day on.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass
from typing import IO, Any, Protocol

from pia.timeseries.backfill import BackfillFailed, BackfillStats, UserHistory

RESULTS_PREFIX = "backfill/"
SUMMARY_INDEX = -1
MAX_PARTS = 99
"""Parts one computation writes: Athena writes at most 100 partitions a query (``HIVE_TOO_MANY_OPEN_
PARTITIONS``), and the counts row takes one. A part is not a rollup partition (a unit fetches its
users' rollups by key wherever they are), so a series may get fewer parts than partitions."""
FILE_ROWS = 1_000
"""Rows per file written by the in-process engines: a unit's page never parses a larger object."""


def result_part(user_id: str, parts: int) -> int:
    """The part of ``parts`` a user's result row is written to (see :func:`part_sql`)."""
    return int(hashlib.md5(user_id.encode(), usedforsecurity=False).hexdigest()[:8], 16) % parts


def result_parts(partitions: Mapping[str, int]) -> dict[str, int]:
    """Each series' parts for one computation of at most :data:`MAX_PARTS` series: one per rollup
    partition, as far as the query's share of :data:`MAX_PARTS` goes."""
    if len(partitions) > MAX_PARTS:
        raise ValueError(f"one backfill computation takes at most {MAX_PARTS} series, not {len(partitions)}")
    share = MAX_PARTS // max(len(partitions), 1)
    return {series: max(1, min(count, share)) for series, count in partitions.items()}


def part_sql(column: str, parts: int) -> str:
    """:func:`result_part` in Athena's dialect (DuckDB gets it through the transpiler)."""
    return f"from_base(substr(to_hex(md5(to_utf8({column}))), 1, 8), 16) % {parts}"


def part_prefix(source: str, part: int) -> str:
    return f"{source}part={part}/"


def series_source(prefix: str, index: int) -> str:
    """Where one series' parts are: the unit's ``source``, and the tag its merged rollups carry."""
    return f"{prefix}sx={index}/"


def history_row(series: str, user_id: str, history: UserHistory) -> dict[str, object]:
    """A history as the query writes it (see :func:`pia.timeseries.backfill_sql.user_history`)."""
    return {
        "series": series,
        "user_id": user_id,
        "days": [f"{day.isoformat()} {t.count} {t.total}" for day, t in sorted(history.days.items())],
        "endpoints": list(history.endpoints),
    }


def summary_row(lines: int, events: int, bad_lines: int) -> dict[str, object]:
    return {"series": "", "user_id": None, "days": [str(lines), str(events), str(bad_lines)]}


class ObjectStore(Protocol):
    def put(self, key: str, body: bytes) -> None: ...

    def stream(self, key: str) -> IO[bytes]: ...

    def keys(self, prefix: str) -> list[str]: ...


class S3Objects:
    """The backfill results bucket (Athena's ``UNLOAD`` target)."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self._s3 = s3
        self._bucket = bucket

    def put(self, key: str, body: bytes) -> None:
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=body)

    def stream(self, key: str) -> IO[bytes]:
        body: IO[bytes] = self._s3.get_object(Bucket=self._bucket, Key=key)["Body"]
        return body

    def keys(self, prefix: str) -> list[str]:
        found: list[str] = []
        kwargs: dict[str, Any] = {"Bucket": self._bucket, "Prefix": prefix}
        while True:
            page = self._s3.list_objects_v2(**kwargs)
            found.extend(entry["Key"] for entry in page.get("Contents", []))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return found
            kwargs["ContinuationToken"] = token


class MemoryObjects:
    """For a stack without a results bucket (and tests): a single-invocation run keeps them here."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put(self, key: str, body: bytes) -> None:
        self.objects[key] = body

    def stream(self, key: str) -> IO[bytes]:
        return io.BytesIO(self.objects[key])

    def keys(self, prefix: str) -> list[str]:
        return sorted(key for key in self.objects if key.startswith(prefix))


@dataclass(frozen=True)
class ResultPage:
    rows: list[dict[str, Any]]
    cursor: dict[str, Any] | None
    """Where the next page starts; None once the part is done."""


def _is_result(key: str) -> bool:
    return not key.endswith(("/", ".metadata", "manifest.csv"))


class _Raw(io.RawIOBase):
    """Any readable body (an S3 ``StreamingBody`` has ``read`` only) as a raw stream to buffer."""

    def __init__(self, body: IO[bytes]) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _lines(body: IO[bytes]) -> Iterator[str]:
    """An object's lines as they are read (gzip or plain, as the workgroup writes them): a unit holds
    one page of rows, never a whole result file, however large Athena made it."""
    with closing(body):
        buffered = io.BufferedReader(_Raw(body))
        raw: io.BufferedIOBase = buffered
        if buffered.peek(2)[:2] == b"\x1f\x8b":
            raw = gzip.GzipFile(fileobj=buffered)
        for line in raw:
            if line.strip():
                yield line.decode()


class BackfillResults:
    def __init__(self, objects: ObjectStore, *, new_run: Any = lambda: uuid.uuid4().hex) -> None:
        self._objects = objects
        self._new_run = new_run
        self.rows_read = 0

    def new_prefix(self) -> str:
        return f"{RESULTS_PREFIX}{self._new_run()}/"

    def write(self, prefix: str, rows: Iterable[tuple[int, int, Mapping[str, object]]]) -> None:
        """Rows keyed by (task index, part), buffered per part and written ``FILE_ROWS`` at a time."""
        pending: dict[tuple[int, int], list[str]] = {}
        written: dict[tuple[int, int], int] = {}

        def flush(where: tuple[int, int]) -> None:
            number = written.get(where, 0)
            key = f"{part_prefix(series_source(prefix, where[0]), where[1])}{number:06d}.json.gz"
            self._objects.put(key, gzip.compress("\n".join(pending.pop(where)).encode() + b"\n"))
            written[where] = number + 1

        for index, part, row in rows:
            lines = pending.setdefault((index, part), [])
            lines.append(json.dumps(row, separators=(",", ":")))
            if len(lines) >= FILE_ROWS:
                flush((index, part))
        for where in list(pending):
            flush(where)

    def read_counts(self, prefix: str, stats: BackfillStats) -> None:
        """The counts row (lines, events, unreadable lines) into ``stats``; without it the result is
        not whole (expired, or written only in part) and is not merged."""
        for key in self._objects.keys(part_prefix(series_source(prefix, SUMMARY_INDEX), 0)):
            if _is_result(key):
                for line in _lines(self._objects.stream(key)):
                    lines, events, bad = (int(str(v)) for v in json.loads(line).get("days") or ())
                    stats.events, stats.duplicates, stats.bad_lines = events, lines - bad - events, bad
                    return
        raise BackfillFailed(
            f"the backfill results under {prefix} have no counts row: incomplete, not merged"
        )

    def page(self, source: str, part: int, cursor: Mapping[str, Any] | None, limit: int) -> ResultPage:
        """At most ``limit`` rows of one part, from ``cursor`` (file key and line)."""
        keys = sorted(k for k in self._objects.keys(part_prefix(source, part)) if _is_result(k))
        start_key = str(cursor["key"]) if cursor else ""
        skip = int(cursor["line"]) if cursor else 0
        rows: list[dict[str, Any]] = []
        for key in (k for k in keys if k >= start_key):
            first = skip if key == start_key else 0
            for line_number, line in enumerate(_lines(self._objects.stream(key))):
                if line_number < first:
                    continue
                if len(rows) == limit:
                    return ResultPage(rows, {"key": key, "line": line_number})
                rows.append(json.loads(line))
                self.rows_read += 1
        return ResultPage(rows, None)


def rows_with_parts(
    rows: Iterable[Mapping[str, object]], index: Mapping[str, int], parts: Mapping[str, int]
) -> Iterator[tuple[int, int, Mapping[str, object]]]:
    """Route rows computed in process to their (task index, part); the counts row to its own place."""
    for row in rows:
        series = str(row["series"])
        if not series:
            yield SUMMARY_INDEX, 0, row
            continue
        yield index[series], result_part(str(row["user_id"]), parts[series]), row
