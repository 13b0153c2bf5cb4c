"""Backfill: the part of a date rule's history that is older than its series' activation.

The aggregator counts a series' events stamped at or after the activation (a day the poller picks
when a series first appears, late enough that every aggregator has the new rules). The events
stamped before it come from the raw event archive, recomputed whole each time, so a repeated
backfill replaces rather than adds, and a duplicate line (a redelivered batch) is dropped by its lane
and sequence number, a producer's resend by its ``event_id``.

Until the activation plus a settling hour has passed, events stamped before the activation may still
arrive, so the backfill is provisional and runs again on each evaluation; after that it is final.
The one thing it cannot see: an event stamped before the activation that reaches the stream after
the final backfill (a device that was offline that long). It is archived, but not counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Protocol
from zoneinfo import ZoneInfo

from pia.core.events import Event
from pia.counting.counters import Position
from pia.timeseries.rollups import BEGINNING, DayTotal, SeriesPlan, local_day, merge_endpoints

if TYPE_CHECKING:
    from pia.timeseries.backfill_results import BackfillResults

SETTLE = timedelta(hours=1)
LISTING_MARGIN = timedelta(days=2)
"""Objects are keyed by the UTC hour they were processed; an event's local day can start up to 14
hours before UTC's, and a device clock can run ahead, so the listing starts two days early."""


@dataclass(frozen=True)
class Coverage:
    """How far back a series' backfill reaches, for which activation, and whether it is final."""

    activation: str
    first_day: date
    final: bool
    source: str = ""
    """Where the merged result was (``""`` before backfills were merged in units): rollups whose
    backfill came from elsewhere are stale, and the series' next sweep clears them."""


@dataclass(frozen=True)
class BackfillTask:
    plan: SeriesPlan
    first_day: date
    final: bool


def backfill_tasks(
    plans: Mapping[str, SeriesPlan],
    coverage: Mapping[str, Coverage],
    today: date,
    now: datetime,
    *,
    oldest: date,
    settle: timedelta = SETTLE,
) -> list[BackfillTask]:
    """The series whose history before the activation is missing, provisional, or too short for a
    rule that reaches further back than the last backfill did."""
    tasks: list[BackfillTask] = []
    for plan in plans.values():
        if plan.starts <= BEGINNING:
            continue
        first = max(plan.earliest_day(today), oldest)
        done = coverage.get(plan.series)
        if done is not None and done.activation == plan.activation:
            if done.final and done.first_day <= first:
                continue
            first = min(first, done.first_day)
        tasks.append(BackfillTask(plan, first, final=now >= plan.starts + settle))
    return tasks


def listing_day(tasks: Sequence[BackfillTask]) -> date:
    """The first UTC day whose archive hours can hold an event of any task's window."""
    return min(t.first_day for t in tasks) - LISTING_MARGIN


@dataclass
class UserHistory:
    days: dict[date, DayTotal] = field(default_factory=dict)
    endpoints: tuple[str, ...] = ()


class BackfillFailed(RuntimeError):
    """An engine could not compute the history this run: its series wait for the next run rather than
    being evaluated on part of their history."""


DEFAULT_UNIT_USERS = 1_000
"""Users merged into rollups per unit of a backfill: one unit is at most this many conditional writes
(ten 100-item transactions), whichever engine computed the history."""


@dataclass(frozen=True)
class HistoryUnit:
    """Part of one series' history: at most a unit's worth of users, each whole (all their days)."""

    series: str
    histories: Mapping[str, UserHistory]


@dataclass
class BackfillStats:
    """What a backfill cost and found, in counts that do not depend on the machine: ``*_read`` is what
    the evaluator itself fetched from S3, ``*_scanned`` what a query engine read on its behalf."""

    path: str = ""
    events: int = 0
    duplicates: int = 0
    bad_lines: int = 0
    objects_read: int = 0
    bytes_read: int = 0
    queries: int = 0
    objects_scanned: int = 0
    bytes_scanned: int = 0


class BackfillEngine(Protocol):
    """Computes the tasks' histories from the raw event archive and hands them over in units.

    Two implementations share this port: a scan inside the evaluator for small histories, and one SQL
    query on a distributed engine (Athena; DuckDB locally) for large ones. Both follow the same rules:
    each stream position counted once, each producer ``event_id`` once per user, events dated in the
    stack's zone, only what was stamped before the series' activation and within its first day.
    """

    def histories(self, tasks: Sequence[BackfillTask], zone: ZoneInfo) -> Iterator[HistoryUnit]: ...

    def land(
        self,
        tasks: Sequence[BackfillTask],
        zone: ZoneInfo,
        results: BackfillResults,
        parts: Mapping[str, int],
    ) -> str:
        """Compute the histories into ``results``, laid out by task and part (``parts`` per series),
        and return their prefix; the evaluator's units merge them (:mod:`pia.timeseries.backfill_results`)."""
        ...

    @property
    def stats(self) -> BackfillStats: ...


def in_units(histories: Iterable[tuple[str, str, UserHistory]], size: int) -> Iterator[HistoryUnit]:
    """Group (series, user, history) into units of at most ``size`` users of one series each."""
    pending: dict[str, dict[str, UserHistory]] = {}
    for series, user, history in histories:
        unit = pending.setdefault(series, {})
        unit[user] = history
        if len(unit) >= size:
            yield HistoryUnit(series, pending.pop(series))
    for series, unit in pending.items():
        yield HistoryUnit(series, unit)


class Backfill:
    """Routes archived events to the series being backfilled, once per stream position."""

    def __init__(self, tasks: list[BackfillTask], zone: ZoneInfo) -> None:
        self.tasks = tasks
        self._zone = zone
        self._seen: set[tuple[str, int]] = set()
        self._seen_ids: set[tuple[str, str]] = set()
        self.histories: dict[str, dict[str, UserHistory]] = {t.plan.series: {} for t in tasks}
        self.events = 0
        self.duplicates = 0

    @property
    def listing_day(self) -> date:
        return listing_day(self.tasks)

    def add(self, position: Position, event: Event) -> None:
        key = (position.lane, position.sequence)
        if key in self._seen:
            self.duplicates += 1
            return
        self._seen.add(key)
        if event.event_id is not None:
            producer_key = (event.user_id, event.event_id)
            if producer_key in self._seen_ids:
                self.duplicates += 1
                return
            self._seen_ids.add(producer_key)
        self.events += 1
        for task in self.tasks:
            plan = task.plan
            if event.timestamp >= plan.starts or not plan.matches(event):
                continue
            day = local_day(event.timestamp, self._zone)
            if day < task.first_day:
                continue
            history = self.histories[plan.series].setdefault(event.user_id, UserHistory())
            history.days[day] = history.days.get(day, DayTotal()).plus(DayTotal(1, plan.value(event)))
            if event.endpoint_id is not None:
                history.endpoints = merge_endpoints(history.endpoints, (event.endpoint_id,))
