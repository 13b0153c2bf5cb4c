"""Readiness: whether a date rule's history is computed yet, as Customer Profiles reports for a new
calculated attribute (``Readiness``: a percentage and a message).

A new date rule counts live events from its series' activation; what happened before comes from the
raw event archive, by a backfill that may take more than one evaluator run (an Athena query left
running is read by the next run). Until then the rule's users are judged on part of their history,
so the evaluator's report says, per live date rule, which it is:

- ``ready``: the history before the activation is computed (and, until the activation has settled,
  recomputed each run as late events arrive), or the rule needs none;
- ``computing``: the backfill has not finished; the message says why (a query still running, a
  failure retried next run) and the rule is not evaluated until it has;
- ``no-archive``: the stack keeps no raw event archive, so the rule counts from its activation only.

Progress is in archive hours, the unit the archive is kept in: the hours between the first day the
rule's window reaches and the activation, and how many of them are computed. Both backfill paths
compute a series' hours in one piece (one scan, one query), whose result the evaluator's units then
merge part by part: progress is the share of parts merged, and while a query runs its state is in
the message.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from pia.timeseries.backfill import BackfillTask
from pia.timeseries.rollups import BEGINNING, SeriesPlan

READY = "ready"
COMPUTING = "computing"
NO_ARCHIVE = "no-archive"


@dataclass(frozen=True)
class Readiness:
    row: int
    output_name: str
    state: str
    hours_total: int
    hours_done: int
    message: str

    @property
    def progress_percent(self) -> int:
        return 100 if self.hours_total == 0 else math.floor(100 * self.hours_done / self.hours_total)

    def to_json(self) -> dict[str, object]:
        return {
            "row": self.row,
            "output_name": self.output_name,
            "state": self.state,
            "progress_percent": self.progress_percent,
            "archive_hours": self.hours_total,
            "archive_hours_done": self.hours_done,
            "message": self.message,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Readiness:
        """A line read back from :meth:`to_json` (an evaluator report travels between states as JSON)."""
        try:
            return cls(
                int(str(data["row"])),
                str(data["output_name"]),
                str(data["state"]),
                int(str(data["archive_hours"])),
                int(str(data["archive_hours_done"])),
                str(data["message"]),
            )
        except (KeyError, ValueError) as error:
            raise ValueError(f"readiness line {data!r}: {error}") from None


def archive_hours(first_day: date, starts: datetime, zone: ZoneInfo) -> int:
    """Whole archive hours from the start of ``first_day`` (in the stack's zone) to the activation."""
    beginning = datetime.combine(first_day, time(0), zone)
    return max(0, math.ceil((starts - beginning).total_seconds() / 3600))


def readiness(
    plans: Mapping[str, SeriesPlan],
    tasks: Iterable[BackfillTask],
    backfilled: Iterable[str],
    *,
    today: date,
    zone: ZoneInfo,
    archive: bool,
    waiting_reason: str = "",
    merging: Mapping[str, tuple[int, int]] | None = None,
) -> list[Readiness]:
    """One line per rule of ``plans``, by row. ``tasks`` are this run's backfills, ``backfilled`` the
    series they completed; ``waiting_reason`` says why the others did not. ``merging``: per series
    whose history is computed, its result parts merged into rollups so far, and their number."""
    merged = merging or {}
    pending = {task.plan.series: task for task in tasks}
    done = set(backfilled)
    lines: list[Readiness] = []
    for series, plan in plans.items():
        task = pending.get(series)
        history = plan.starts > BEGINNING
        first = task.first_day if task is not None else plan.earliest_day(today)
        hours = archive_hours(first, plan.starts, zone) if history else 0
        if not history:
            state, hours_done, message = READY, 0, "no history before the rule went live is needed"
        elif not archive:
            state, hours_done, message = (
                NO_ARCHIVE,
                0,
                "no raw event archive: counted from the activation only",
            )
        elif task is None:
            state, hours_done, message = READY, hours, "history computed"
        elif series in done:
            state, hours_done = READY, hours
            message = (
                "history computed" if task.final else "history computed; recomputed until late events settle"
            )
        elif series in merged:
            parts_done, parts = merged[series]
            state, hours_done = COMPUTING, hours * parts_done // max(parts, 1)
            message = f"history computed; merged into rollups in {parts_done} of {parts} parts"
        else:
            state, hours_done = COMPUTING, 0
            message = waiting_reason or "history not written completely; retried next run"
        lines.extend(
            Readiness(rule.row, rule.output_name, state, hours, hours_done, message) for rule in plan.rules
        )
    return sorted(lines, key=lambda line: line.row)
