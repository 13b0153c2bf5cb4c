"""Where a backfill runs: inside the evaluator for a small history, on a query engine for a large one.

Reading the archive in the evaluator costs one GET per archived Kinesis batch, one after another in
one invocation: about 2,000 objects fit comfortably in Lambda's 15 minutes together with the rest of
the run, 2.6 billion events (30 days at 1,000 events/s) do not. Above the limit the same computation
runs as one SQL query on Athena, which scans the archive in parallel and returns only one row per
(series, user). The choice is made per run from a listing of the window's archive, which stops as
soon as the limit is passed, so deciding costs at most ``limit / 1,000`` List requests.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol
from zoneinfo import ZoneInfo

from pia.timeseries.archive import RawObject, listing_start
from pia.timeseries.backfill import (
    DEFAULT_UNIT_USERS,
    Backfill,
    BackfillEngine,
    BackfillStats,
    BackfillTask,
    HistoryUnit,
    UserHistory,
    in_units,
    listing_day,
)
from pia.timeseries.backfill_results import BackfillResults, history_row, rows_with_parts, summary_row
from pia.timeseries.backfill_sql import filter_sql

IN_LAMBDA = "in-lambda"
DEFAULT_LAMBDA_MAX_OBJECTS = 2_000
DEFAULT_LAMBDA_MAX_BYTES = 256 * 1024 * 1024
QUERY_FILTERS_BUDGET = 192 * 1024
"""Bytes of Filter predicates one query may hold: Athena refuses a query over 262,144 bytes, and the
rest of the query takes a few kilobytes per series."""


class ArchiveReader(Protocol):
    def entries(self, *, start_after: str = "", prefix: str = "raw/") -> Iterator[tuple[str, int]]: ...

    def read(self, key: str) -> RawObject: ...


class ArchiveListing(Protocol):
    def entries(self, *, start_after: str = "", prefix: str = "raw/") -> Iterator[tuple[str, int]]: ...


class ArchiveScan:
    """The in-Lambda path: every archived object of the window, read and deduplicated in memory."""

    def __init__(self, archive: ArchiveReader, *, unit_users: int = DEFAULT_UNIT_USERS) -> None:
        self._archive = archive
        self._unit_users = unit_users
        self._stats = BackfillStats(IN_LAMBDA)

    @property
    def stats(self) -> BackfillStats:
        return self._stats

    def histories(self, tasks: Sequence[BackfillTask], zone: ZoneInfo) -> Iterator[HistoryUnit]:
        yield from in_units(self._scan(tasks, zone), self._unit_users)

    def land(
        self,
        tasks: Sequence[BackfillTask],
        zone: ZoneInfo,
        results: BackfillResults,
        parts: Mapping[str, int],
    ) -> str:
        """The scan's histories written in the query's layout, parts computed here as the SQL does."""
        prefix = results.new_prefix()
        rows = [history_row(series, user, history) for series, user, history in self._scan(tasks, zone)]
        stats = self._stats
        rows.append(
            summary_row(stats.events + stats.duplicates + stats.bad_lines, stats.events, stats.bad_lines)
        )
        index = {task.plan.series: n for n, task in enumerate(tasks)}
        results.write(prefix, rows_with_parts(rows, index, parts))
        return prefix

    def _scan(self, tasks: Sequence[BackfillTask], zone: ZoneInfo) -> Iterator[tuple[str, str, UserHistory]]:
        stats = self._stats = BackfillStats(IN_LAMBDA)
        backfill = Backfill(list(tasks), zone)
        for key, size in self._archive.entries(start_after=listing_start(backfill.listing_day)):
            raw = self._archive.read(key)
            stats.objects_read += 1
            stats.bytes_read += size
            stats.bad_lines += raw.bad_lines
            for position, event in raw.events:
                backfill.add(position, event)
        stats.events, stats.duplicates = backfill.events, backfill.duplicates
        for series, users in backfill.histories.items():
            for user, history in users.items():
                yield series, user, history


@dataclass(frozen=True)
class LambdaLimit:
    """The largest window of archive the evaluator reads itself (both bounds must hold)."""

    objects: int = DEFAULT_LAMBDA_MAX_OBJECTS
    bytes: int = DEFAULT_LAMBDA_MAX_BYTES


class SizedBackfill:
    """The in-Lambda path up to ``limit``, the query engine beyond it (when one is configured)."""

    def __init__(
        self,
        listing: ArchiveListing,
        small: BackfillEngine,
        large: BackfillEngine | None,
        limit: LambdaLimit = LambdaLimit(),
        *,
        filters_budget: int = QUERY_FILTERS_BUDGET,
    ) -> None:
        self._listing = listing
        self._filters_budget = filters_budget
        self._small = small
        self._large = large
        self._limit = limit
        self._chosen: BackfillEngine = small

    @property
    def stats(self) -> BackfillStats:
        return self._chosen.stats

    def fits_in_lambda(self, tasks: Sequence[BackfillTask]) -> bool:
        size = 0
        listing = self._listing.entries(start_after=listing_start(listing_day(tasks)))
        for objects, (_, length) in enumerate(listing, start=1):
            size += length
            if objects > self._limit.objects or size > self._limit.bytes:
                return False
        return True

    def histories(self, tasks: Sequence[BackfillTask], zone: ZoneInfo) -> Iterator[HistoryUnit]:
        yield from self._choose(tasks).histories(tasks, zone)

    def land(
        self,
        tasks: Sequence[BackfillTask],
        zone: ZoneInfo,
        results: BackfillResults,
        parts: Mapping[str, int],
    ) -> str:
        return self._choose(tasks).land(tasks, zone, results, parts)

    def _choose(self, tasks: Sequence[BackfillTask]) -> BackfillEngine:
        """Above the limit, the query engine, Filters included (:mod:`pia.timeseries.filter_sql`).
        A run whose Filters would pass the query's size budget is read in the evaluator whole: one
        run lands its histories under one prefix, so it cannot be split between engines."""
        large = self._large
        past_budget = bool(sql_and_lambda_tasks(tasks, self._filters_budget)[1])
        if large is None or past_budget or self.fits_in_lambda(tasks):
            self._chosen = self._small
        else:
            self._chosen = large
        return self._chosen


def sql_and_lambda_tasks(
    tasks: Sequence[BackfillTask], budget: int = QUERY_FILTERS_BUDGET
) -> tuple[list[BackfillTask], list[BackfillTask]]:
    """The tasks a query can compute exactly, within ``budget`` bytes of Filter predicates in all
    (about 60 of the longest filters), and the rest."""
    on_sql: list[BackfillTask] = []
    in_lambda: list[BackfillTask] = []
    for task in tasks:
        condition = filter_sql(task)
        size = len(condition.encode()) if condition is not None else budget + 1
        if size > budget:
            in_lambda.append(task)
            continue
        budget -= size
        on_sql.append(task)
    return on_sql, in_lambda
