"""The backfill query's text and the reading of its rows, without an engine."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import sqlglot

from pia.rules.table import parse_rules
from pia.timeseries.backfill import BackfillStats, BackfillTask, HistoryUnit
from pia.timeseries.backfill_engine import LambdaLimit, SizedBackfill, sql_and_lambda_tasks
from pia.timeseries.backfill_sql import backfill_query, filter_sql, histories_from_rows
from pia.timeseries.rollups import DayTotal, SeriesPlan
from tests.conftest import rule_row

HOSTILE = "x' OR '1'='1"


def _task(attribute_value: str = HOSTILE) -> BackfillTask:
    row = rule_row(
        "date",
        "purchase",
        "category",
        attribute_value,
        "greater",
        "1",
        "na",
        "999",
        "no",
        "2026-03-01",
        "2026-03-31",
    )
    (rule,) = parse_rules(enumerate([row], start=2)).rules
    plan = SeriesPlan(rule.series, (rule,), "2026-03-10", datetime(2026, 3, 10, tzinfo=UTC))
    return BackfillTask(plan, date(2026, 3, 1), final=True)


def test_a_rule_cell_with_quotes_stays_inside_its_string_literal() -> None:
    task = _task()
    query = backfill_query([task], ZoneInfo("Europe/Paris"))

    (statement,) = sqlglot.parse(query, read="trino")
    assert statement is not None
    literals = {node.this for node in statement.find_all(sqlglot.exp.Literal) if node.is_string}
    assert HOSTILE in literals and task.plan.series in literals and "'" in task.plan.series
    assert "datehour >= '2026/02/27/00'" in query


def test_a_day_adds_the_values_sql_could_not_hold_exactly_and_reads_like_the_in_lambda_sum() -> None:
    rows = [
        {
            "series": "s",
            "user_id": "amy",
            "days": ["2026-03-01 3 12.500000000 1E+2 0.1234567891234"],
            "endpoints": ["b", "a"],
        },
        {
            "series": "s",
            "user_id": "bob",
            "days": ["2026-03-02 2 0", "2026-03-03 1 1200.000000000"],
            "endpoints": None,
        },
        {"series": "", "user_id": None, "days": ["10", "7", "1"], "endpoints": None},
    ]
    counts: list = []

    found = {user: history for _, user, history in histories_from_rows(rows, counts)}

    assert found["amy"].days == {date(2026, 3, 1): DayTotal(3, Decimal("112.6234567891234"))}
    assert str(found["bob"].days[date(2026, 3, 3)].total) == "1200"
    assert found["amy"].endpoints == ("b", "a") and found["bob"].endpoints == ()
    assert (counts[0].events, counts[0].duplicates, counts[0].bad_lines) == (7, 2, 1)


def test_a_day_s_long_total_keeps_the_38_digits_the_in_lambda_sum_keeps() -> None:
    """Found by the random-filter property test: Python's default context cut a 38-digit SQL total
    to 28 digits, so the two backfill paths disagreed on the same archive."""
    long = "123456789012345678901234567890.12345679"
    rows = [
        {"series": "s", "user_id": "amy", "days": [f"2026-03-02 3 0 {long}"], "endpoints": None},
        {"series": "", "user_id": None, "days": ["3", "3", "0"], "endpoints": None},
    ]

    ((_, _, history),) = list(histories_from_rows(rows, []))

    assert history.days == {date(2026, 3, 2): DayTotal(3, Decimal(long))}
    assert history.days == {date(2026, 3, 2): DayTotal().plus(DayTotal(3, Decimal(long)))}


class _Listing:
    def __init__(self, objects: int, size: int = 10) -> None:
        self.objects, self.size, self.listed = objects, size, 0

    def entries(self, *, start_after: str = "", prefix: str = "raw/") -> Iterator[tuple[str, int]]:
        for n in range(self.objects):
            self.listed += 1
            yield f"raw/2026/03/01/00/{n:06d}", self.size


class _Engine:
    def __init__(self, path: str) -> None:
        self.stats = BackfillStats(path)

    def histories(self, tasks: object, zone: object) -> Iterator[HistoryUnit]:
        yield HistoryUnit("s", {})


def test_the_threshold_picks_the_path_and_stops_listing_once_it_is_passed() -> None:
    tasks = [_task("books")]
    for objects, size, path in ((3, 10, "in-lambda"), (4, 10, "athena"), (2, 200, "athena")):
        listing = _Listing(objects, size)
        engine = SizedBackfill(
            listing, _Engine("in-lambda"), _Engine("athena"), LambdaLimit(objects=3, bytes=300)
        )
        list(engine.histories(tasks, ZoneInfo("UTC")))
        assert engine.stats.path == path, (objects, size)
        assert listing.listed <= 4
    many = _Listing(1_000_000)
    list(
        SizedBackfill(many, _Engine("in-lambda"), _Engine("athena"), LambdaLimit(objects=3)).histories(
            tasks, ZoneInfo("UTC")
        )
    )
    assert many.listed == 4
    alone = SizedBackfill(_Listing(10), _Engine("in-lambda"), None, LambdaLimit(objects=3))
    list(alone.histories(tasks, ZoneInfo("UTC")))
    assert alone.stats.path == "in-lambda"


def test_the_backfill_threshold_setting_defaults_to_2000_and_zero_means_always_athena() -> None:
    from pia.settings import EvaluatorSettings

    tables = {"RULESET_TABLE": "r", "TIMESERIES_TABLE": "t", "AGGREGATES_TABLE": "a"}

    assert EvaluatorSettings.from_env(tables).backfill_lambda_max_objects == 2_000
    assert (
        EvaluatorSettings.from_env({**tables, "BACKFILL_LAMBDA_MAX_OBJECTS": ""}).backfill_lambda_max_objects
        == 2_000
    )
    assert (
        EvaluatorSettings.from_env({**tables, "BACKFILL_LAMBDA_MAX_OBJECTS": "0"}).backfill_lambda_max_objects
        == 0
    )
    assert EvaluatorSettings.from_env(tables).backfill_query_engine == "athena"


def _filtered_task(text: str) -> BackfillTask:
    row = rule_row(
        "date",
        "purchase",
        "na",
        "na",
        "na",
        "999",
        "greater",
        "1",
        "no",
        "2026-03-01",
        "2026-03-31",
        Filter=text,
        OutputName="trk_fr_buyers",
    )
    (rule,) = parse_rules(enumerate([row], start=2)).rules
    plan = SeriesPlan(rule.series, (rule,), "2026-03-10", datetime(2026, 3, 10, tzinfo=UTC))
    return BackfillTask(plan, date(2026, 3, 1), final=True)


class _Recording(_Engine):
    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.given: list[str] = []

    def histories(self, tasks: object, zone: object) -> Iterator[HistoryUnit]:
        self.given.extend(t.plan.series for t in tasks)  # type: ignore[attr-defined]
        self.stats.events += 1
        yield HistoryUnit("s", {})


def test_a_filtered_series_takes_the_sql_path_above_the_threshold() -> None:
    tasks = [_task("books"), _filtered_task('country = "FR" and price >= 20')]
    small, large = _Recording("in-lambda"), _Recording("athena")
    engine = SizedBackfill(_Listing(1_000), small, large, LambdaLimit(objects=3))

    list(engine.histories(tasks, ZoneInfo("UTC")))

    assert engine.stats.path == "athena"
    assert large.given == [t.plan.series for t in tasks] and small.given == []
    query = backfill_query(tasks, ZoneInfo("UTC"))
    assert "element_at(a, 'country') = 'FR'" in query and "element_at(mk, 'price')" in query
    assert "transform_values(m, (metric_name, metric_text) ->" in query


def test_filters_past_the_query_budget_are_backfilled_in_the_evaluator() -> None:
    tasks = [_filtered_task(f"price > {n}") for n in range(1, 6)]
    size = len((filter_sql(tasks[0]) or "").encode())

    on_sql, in_lambda = sql_and_lambda_tasks([_task("books"), *tasks], budget=size * 3)

    assert [t.plan.series for t in on_sql] == [_task("books").plan.series] + [
        t.plan.series for t in tasks[:3]
    ]
    assert in_lambda == tasks[3:]


def test_a_run_whose_filters_pass_the_query_budget_is_read_in_the_evaluator() -> None:
    tasks = [_task("books"), _filtered_task('note = "a\x00b" or n > 1'), _filtered_task('note = "ab"')]
    small, large = _Recording("in-lambda"), _Recording("athena")
    budget = len((filter_sql(tasks[2]) or "").encode())
    engine = SizedBackfill(_Listing(1_000), small, large, LambdaLimit(objects=3), filters_budget=budget)

    list(engine.histories(tasks, ZoneInfo("UTC")))

    assert small.given == [t.plan.series for t in tasks] and large.given == []
    assert engine.stats.path == "in-lambda"


def test_the_sql_puts_each_user_in_the_part_python_computes() -> None:
    """The result's layout is computed by the query on Athena and DuckDB, and by the in-Lambda scan
    in Python: a user must land in the same part whichever path ran."""
    import duckdb

    from pia.timeseries.backfill_results import part_sql, result_part
    from pia.timeseries.duckdb_backfill import to_duckdb

    users = ["user-1", "", "ü-Ωmega", "a'b", "x" * 300, "😀", "user-10"]
    connection = duckdb.connect()
    for parts in (1, 2, 16, 1_000):
        query = to_duckdb(
            f"SELECT u, {part_sql('u', parts)} AS part FROM (VALUES {', '.join('(?)' for _ in users)}) AS t(u)"
        )
        found = dict(connection.execute(query, users).fetchall())
        assert found == {user: result_part(user, parts) for user in users}, parts
