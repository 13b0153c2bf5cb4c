"""The backfill as one SQL query over the raw event archive, in Athena's (Trino) dialect.

It computes what :class:`pia.timeseries.backfill.Backfill` computes in the evaluator, by the same
rules, so that either can run and the rollups come out the same:
- a stream position (lane, sequence number) is counted once, its first archived copy kept;
- then a producer's ``event_id`` is counted once per user, the first one in archive order kept
  (object key, then sequence number: the order in which the evaluator reads them);
- an event belongs to its task's series if its name, attribute filter and Filter match (the Filter
  as the SQL predicate of :mod:`pia.timeseries.filter_sql`), it was stamped
  before the series' activation, and its calendar day in the stack's zone is on or after the task's
  first day; the archive is read from the same hour prefix the evaluator lists from;
- a user's endpoints are kept in the order they were last seen.

The table is the Glue table ``raw_events`` the template declares over ``raw/``: one column per key of
an archived line, and the partition ``datehour`` projected on the ``YYYY/MM/DD/HH`` prefixes. Locally
DuckDB runs the same text, transpiled by sqlglot, over a view of the same files.

Metric values are summed as ``DECIMAL(38, 9)`` when they are plain decimals that fit exactly (at most
18 integer and 9 fractional digits); any other value (exponent form, more digits) is returned as its
text and added in Python, so the total is the same as the evaluator's ``Decimal`` sum. (A day's sum
of more than 28 significant digits is rounded on both paths, and may differ in its last digit.)

One row per (series, user) carries all of that user's days, so the results can be cut into units of
whole users wherever they are split across files. One more row, with an empty series, carries the
counts of lines, events and unreadable lines.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, localcontext
from zoneinfo import ZoneInfo

from pia.rules.aggregates import SUMS
from pia.timeseries.backfill import (
    BackfillFailed,
    BackfillStats,
    BackfillTask,
    HistoryUnit,
    UserHistory,
    in_units,
    listing_day,
)
from pia.timeseries.backfill_results import SUMMARY_INDEX, part_sql
from pia.timeseries.rollups import ZERO, DayTotal, merge_endpoints

RAW_EVENTS_TABLE = "raw_events"
PARTITION = "datehour"
EXACT_DECIMAL = r"^-?[0-9]{1,18}(\.[0-9]{1,9})?$"
SUMMARY_SERIES = ""
PLAIN_DIGITS = 28


def literal(text: str) -> str:
    """A SQL string literal; rule cells are the marketer's text, so quotes are doubled, never trusted."""
    return "'" + text.replace("'", "''") + "'"


def identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _raw_value(task: BackfillTask) -> str:
    """The metric text an event adds to the day's sum, as ``SeriesPlan.value`` picks it."""
    rule = task.plan.rules[0]
    if not rule.needs_sum:
        return "CAST(NULL AS varchar)"
    if rule.metric_name is not None:
        return f"element_at(m, {literal(rule.metric_name)})"
    return "CASE WHEN cardinality(map_keys(m)) = 1 THEN element_at(map_values(m), 1) END"


def filter_sql(task: BackfillTask) -> str | None:
    """The task's Filter as a SQL condition: ``""`` for an unfiltered series, ``None`` for a filter
    with no exact SQL form, whose series the evaluator must backfill itself."""
    rule = task.plan.rules[0]
    if rule.filter is None:
        return ""
    from pia.timeseries.filter_sql import filter_predicate  # noqa: PLC0415 (only filtered rules need it)

    return filter_predicate(rule.filter.expression)


def _metric_keys(tasks: Sequence[BackfillTask]) -> str:
    """The ``mk`` column of the events, when a task's Filter compares a metric with a number."""
    filters = [f.expression for t in tasks if (f := t.plan.rules[0].filter) is not None]
    if not filters:
        return ""
    from pia.timeseries.filter_sql import compares_numbers, metric_keys  # noqa: PLC0415

    return f",\n    {metric_keys()} AS mk" if any(compares_numbers(f) for f in filters) else ""


def _filter_condition(task: BackfillTask) -> str:
    condition = filter_sql(task)
    if condition is None:
        raise ValueError(f"series {task.plan.series}: its Filter has no SQL form; backfill it in Lambda")
    return condition


def _task_select(task: BackfillTask, zone: ZoneInfo) -> str:
    rule = task.plan.rules[0]
    local_day = f"CAST(ts AT TIME ZONE {literal(zone.key)} AS DATE)"
    conditions = [f"e = {literal(rule.event_name)}"]
    if rule.attribute_name is not None and rule.attribute_value is not None:
        conditions.append(f"element_at(a, {literal(rule.attribute_name)}) = {literal(rule.attribute_value)}")
    if rule.aggregate.on_metric:
        conditions.append(f"{_raw_value(task)} IS NOT NULL")
    if rule.filter is not None:
        conditions.append(_filter_condition(task))
    conditions.append(f"ts < from_iso8601_timestamp_nanos({literal(task.plan.starts.isoformat())})")
    conditions.append(f"{local_day} >= DATE {literal(task.first_day.isoformat())}")
    return (
        f"  SELECT {literal(task.plan.series)} AS series, u, {local_day} AS day, "
        f"{_raw_value(task)} AS raw, p, pos\n"
        f"  FROM events\n  WHERE " + "\n    AND ".join(conditions)
    )


def _layout_columns(tasks: Sequence[BackfillTask], parts: Mapping[str, int] | None) -> tuple[str, str]:
    """With ``parts``, each row also says where it is written (``UNLOAD ... partitioned_by``): ``sx``
    its task's index and ``part`` its user's part (:mod:`pia.timeseries.backfill_results`)."""
    if parts is None:
        return "", ""
    index = " ".join(f"WHEN {literal(t.plan.series)} THEN {n}" for n, t in enumerate(tasks))
    part = " ".join(
        f"WHEN {literal(t.plan.series)} THEN {part_sql('d.u', parts[t.plan.series])}" for t in tasks
    )
    return (
        f",\n  CASE d.series {index} END AS sx,\n  CASE d.series {part} END AS part",
        f",\n  {SUMMARY_INDEX} AS sx,\n  0 AS part",
    )


def backfill_query(
    tasks: Sequence[BackfillTask],
    zone: ZoneInfo,
    *,
    table: str = RAW_EVENTS_TABLE,
    parts: Mapping[str, int] | None = None,
) -> str:
    """One query for every task: the archive is scanned and deduplicated once, then split by series."""
    if not tasks:
        raise ValueError("a backfill query needs at least one task")
    first_hour = f"{listing_day(tasks):%Y/%m/%d}/00"
    matched = "\n  UNION ALL\n".join(_task_select(task, zone) for task in tasks)
    exact = f"regexp_like(raw, {literal(EXACT_DECIMAL)})"
    user_layout, summary_layout = _layout_columns(tasks, parts)
    return f"""WITH lines AS (
  SELECT l, q, u, e, t, a, m, p, i, "$path" AS path,
    try(from_iso8601_timestamp_nanos(t)) AS ts
  FROM {identifier(table)}
  WHERE {PARTITION} >= {literal(first_hour)}
),
valid AS (
  SELECT * FROM lines
  WHERE l IS NOT NULL AND q IS NOT NULL AND u IS NOT NULL AND e IS NOT NULL AND ts IS NOT NULL
),
positions AS (
  SELECT *, row_number() OVER (PARTITION BY l, q ORDER BY path) AS copy FROM valid
),
resends AS (
  SELECT *, row_number() OVER (PARTITION BY u, i ORDER BY path, length(q), q) AS resend
  FROM positions WHERE copy = 1
),
events AS (
  SELECT u, e, a, m, p, ts,
    row_number() OVER (PARTITION BY u ORDER BY path, length(q), q) AS pos{_metric_keys(tasks)}
  FROM resends WHERE i IS NULL OR resend = 1
),
matched AS (
{matched}
),
daily AS (
  SELECT series, u, day, count(*) AS n,
    sum(CASE WHEN {exact} THEN CAST(raw AS DECIMAL(38, 9)) END) AS exact_total,
    array_agg(raw) FILTER (WHERE raw IS NOT NULL AND NOT {exact}) AS other
  FROM matched
  GROUP BY series, u, day
),
user_days AS (
  SELECT series, u, array_agg(
    CAST(day AS varchar) || ' ' || CAST(n AS varchar) || ' '
    || COALESCE(CAST(exact_total AS varchar), '0')
    || COALESCE(' ' || array_join(other, ' '), '')
  ) AS days
  FROM daily
  GROUP BY series, u
),
last_seen AS (
  SELECT series, u, p, max(pos) AS last_pos FROM matched WHERE p IS NOT NULL GROUP BY series, u, p
),
user_endpoints AS (
  SELECT series, u, array_agg(p ORDER BY last_pos) AS endpoints FROM last_seen GROUP BY series, u
)
SELECT d.series AS series, d.u AS user_id, d.days AS days, ep.endpoints AS endpoints{user_layout}
FROM user_days d LEFT JOIN user_endpoints ep ON d.series = ep.series AND d.u = ep.u
UNION ALL
SELECT {literal(SUMMARY_SERIES)} AS series, CAST(NULL AS varchar) AS user_id,
  ARRAY[
    CAST((SELECT count(*) FROM lines) AS varchar),
    CAST((SELECT count(*) FROM events) AS varchar),
    CAST((SELECT count(*) FROM lines) - (SELECT count(*) FROM valid) AS varchar)
  ] AS days,
  CAST(NULL AS array(varchar)) AS endpoints{summary_layout}
"""


@dataclass(frozen=True)
class QueryCounts:
    lines: int = 0
    events: int = 0
    bad_lines: int = 0

    @property
    def duplicates(self) -> int:
        return self.lines - self.bad_lines - self.events


def _day(text: str) -> tuple[date, DayTotal]:
    """Added and normalized in the sums' own context (38 digits), as the in-Lambda path adds: the
    default context would keep 28 and the two paths would disagree on a long total."""
    day, count, exact, *other = text.split(" ")
    with localcontext(SUMS):
        total = Decimal(exact) + sum((Decimal(v) for v in other), ZERO)
        return date.fromisoformat(day), DayTotal(int(count), _plain(total))


def _plain(total: Decimal) -> Decimal:
    """``12.500000000`` as ``12.5`` and ``1.2E+3`` as ``1200``: the number the evaluator's sum holds."""
    normal = total.normalize()
    if normal.as_tuple().exponent > 0 and normal.adjusted() < PLAIN_DIGITS:  # type: ignore[operator]
        return normal.quantize(Decimal(1))
    return normal


def user_history(days: Iterable[str], endpoints: Sequence[str] | None) -> UserHistory:
    return UserHistory(dict(_day(d) for d in days), merge_endpoints((), endpoints or ()))


def histories_from_rows(
    rows: Iterable[Mapping[str, object]], counts: list[QueryCounts]
) -> Iterator[tuple[str, str, UserHistory]]:
    """(series, user, history) for each result row; the summary row's counts go to ``counts``."""
    for row in rows:
        series = str(row["series"])
        days = [str(d) for d in row.get("days") or ()]  # type: ignore[attr-defined]
        if series == SUMMARY_SERIES:
            lines, events, bad = (int(v) for v in days)
            counts.append(QueryCounts(lines, events, bad))
            continue
        endpoints = [str(e) for e in row.get("endpoints") or ()]  # type: ignore[attr-defined]
        yield series, str(row["user_id"]), user_history(days, endpoints)


ARCHIVE_COLUMNS: Mapping[str, str] = {
    "l": "string",
    "q": "string",
    "u": "string",
    "e": "string",
    "t": "string",
    "a": "map<string,string>",
    "m": "map<string,string>",
    "p": "string",
    "i": "string",
    "f": "string",
}
"""The Glue table's columns: one per key of an archived line (``pia.timeseries.archive``)."""


def units_from_rows(
    rows: Iterable[Mapping[str, object]], stats: BackfillStats, unit_users: int
) -> Iterator[HistoryUnit]:
    """The query's rows as units of whole users; the summary row's counts go to ``stats``. Results
    without it are not the query's whole answer (expired, or written only in part)."""
    counts: list[QueryCounts] = []
    yield from in_units(histories_from_rows(rows, counts), unit_users)
    if not counts:
        raise BackfillFailed("the backfill query's results have no summary row: incomplete, not merged")
    for found in counts:
        stats.events += found.events
        stats.duplicates += found.duplicates
        stats.bad_lines += found.bad_lines
