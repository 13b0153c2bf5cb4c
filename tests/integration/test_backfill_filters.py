"""Filtered date rules on both backfill paths (issue #12): the Filter's SQL predicate, run by DuckDB
over the archive, must select the events the compiled filter selects in the evaluator's own scan,
whatever the names, texts and numbers: missing names, `not`, case, spaces, unicode in either
normal form, empty texts, quotes, numbers in every written form and at the ends of a double."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pia.core.events import Event
from pia.counting.aggregator import InboundRecord
from pia.counting.counters import Position
from pia.rules.filters import (
    AllOf,
    AnyOf,
    Exists,
    Expression,
    Not,
    NumberOp,
    NumberTest,
    TextOp,
    TextTest,
    render,
)
from pia.rules.ruleset import RulesetTable
from pia.rules.table import parse_rules
from pia.timeseries.archive import RawObject, decode, encode, object_key
from pia.timeseries.backfill import BackfillEngine, BackfillTask
from pia.timeseries.backfill_engine import ArchiveScan, LambdaLimit, SizedBackfill
from pia.timeseries.duckdb_backfill import DuckDbBackfill, to_duckdb
from pia.timeseries.evaluator import Evaluator
from pia.timeseries.filter_sql import number_key, number_key_sql
from pia.timeseries.rollups import SeriesPlan, activation_instant
from pia.timeseries.store import CoverageTable, RollupStore
from tests.conftest import RULESET_TABLE, create_table
from tests.integration.timeseries_support import date_row, publish

ACTIVATION = "2026-03-10"
STARTS = activation_instant(ACTIVATION)
HOSTILE = "x' OR '1'='1"
NAMES = ("plan", "Plan", "price", "qty", "first name", "é", "e\u0301", HOSTILE, "a\\b")
TEXTS = (
    "gold",
    "Gold",
    " gold",
    "gold ",
    "",
    "é",
    "e\u0301",
    "🦆",
    "%",
    "_",
    HOSTILE,
    "it\\'s",
    "a\nb",
    "\u00a0",
    "ß",
    "SS",
)
NUMBER_TEXTS = (
    "0",
    "-0",
    "0E-10",
    "1000",
    "1E+3",
    "1e3",
    "0.1",
    "0.1000000000000000055511151231257827",
    "-1.5",
    "-1.51",
    "-1.49",
    "2.5",
    "1E-400",
    "-1E-400",
    "1.7976931348623157E+308",
    "-1.7976931348623157E+308",
    "123456789012345678901234567890.123456789",
    "7.10",
)
MAX_DOUBLE = Decimal("1.7976931348623157E+308")


def _bounded(value: Decimal) -> bool:
    return value.copy_abs() <= MAX_DOUBLE and (value.is_zero() or -400 <= value.adjusted() <= 400)


numbers = st.one_of(
    st.sampled_from(NUMBER_TEXTS).map(Decimal),
    st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-100, max_value=100),
    st.builds(
        lambda digits, exponent: Decimal(f"{digits}E{exponent}"),
        st.integers(-(10**20), 10**20),
        st.integers(-420, 300),
    ).filter(_bounded),
)
names = st.sampled_from(NAMES)
texts = st.one_of(st.sampled_from(TEXTS), st.text(st.characters(exclude_categories=["Cs"]), max_size=4))

leaves: st.SearchStrategy[Expression] = st.one_of(
    st.builds(Exists, names),
    st.builds(
        TextTest, names, st.sampled_from([o for o in TextOp if o is not TextOp.IN]), texts.map(lambda t: (t,))
    ),
    st.builds(
        TextTest,
        names,
        st.just(TextOp.IN),
        st.lists(texts, min_size=1, max_size=3).map(lambda v: tuple(sorted(set(v)))),
    ),
    st.builds(
        NumberTest,
        names,
        st.sampled_from([o for o in NumberOp if o is not NumberOp.IN]),
        numbers.map(lambda n: (n,)),
    ),
    st.builds(
        NumberTest,
        names,
        st.just(NumberOp.IN),
        st.lists(numbers, min_size=1, max_size=3).map(lambda v: tuple(sorted(set(v)))),
    ),
)
expressions: st.SearchStrategy[Expression] = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.builds(Not, inner),
        st.builds(AllOf, st.lists(inner, min_size=2, max_size=3).map(tuple)),
        st.builds(AnyOf, st.lists(inner, min_size=2, max_size=3).map(tuple)),
    ),
    max_leaves=6,
)

events = st.fixed_dictionaries(
    {
        "user": st.sampled_from(("amy", "bob", "cy")),
        "day": st.integers(2, 9),
        "attributes": st.dictionaries(names, texts, max_size=3),
        "metrics": st.dictionaries(names, numbers.filter(lambda n: n.copy_abs() <= MAX_DOUBLE), max_size=3),
    }
)


class _Archive:
    """The raw archive in memory, written and read with the archive's own format."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put(self, records: list[InboundRecord], now: datetime) -> None:
        self.objects[object_key(records, now)] = encode(records)

    def entries(self, *, start_after: str = "", prefix: str = "raw/") -> Iterator[tuple[str, int]]:
        for key in sorted(self.objects):
            if key > start_after and key.startswith(prefix):
                yield key, len(self.objects[key])

    def read(self, key: str) -> RawObject:
        return decode(self.objects[key])

    def body(self, key: str) -> bytes:
        return self.objects[key]


def _archive(drawn: list[dict[str, Any]]) -> _Archive:
    archive = _Archive()
    records = [
        InboundRecord(
            Position("shardId-000000000000", 1000 + n),
            Event(
                user_id=e["user"],
                event_type="purchase",
                timestamp=datetime(2026, 3, e["day"], 12, n % 60, tzinfo=UTC),
                attributes=e["attributes"],
                metrics=e["metrics"],
            ),
        )
        for n, e in enumerate(drawn)
    ]
    for start in range(0, len(records), 10):
        archive.put(records[start : start + 10], datetime(2026, 3, 9, tzinfo=UTC))
    return archive


def _tasks(filters: list[Expression]) -> list[BackfillTask]:
    """For each filter, a count rule and a sum of ``price``: both kinds of series the query selects."""
    rows = []
    for n, expression in enumerate(filters):
        text = render(expression)
        rows.append(date_row("greater", "0", Filter=text, OutputName=f"trk_count_{n}"))
        rows.append(
            date_row("na", "999", "greater", "0", Filter=text, MetricName="price", OutputName=f"trk_sum_{n}")
        )
    parsed = parse_rules(enumerate(rows, start=2))
    assert not parsed.errors, parsed.errors
    plans = {r.series: SeriesPlan(r.series, (r,), ACTIVATION, STARTS) for r in parsed.rules}
    return [BackfillTask(plan, date(2026, 3, 1), final=True) for plan in plans.values()]


def _collect(engine: BackfillEngine, tasks: list[BackfillTask]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for unit in engine.histories(tasks, ZoneInfo("UTC")):
        found.setdefault(unit.series, {}).update(
            {u: (h.days, h.endpoints) for u, h in unit.histories.items()}
        )
    return found


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(expressions, min_size=1, max_size=3), st.lists(events, min_size=1, max_size=30))
def test_both_backfill_paths_give_the_same_histories_for_random_filters_and_events(
    filters: list[Expression], drawn: list[dict[str, Any]]
) -> None:
    archive = _archive(drawn)
    tasks = _tasks(filters)
    duck = DuckDbBackfill(archive)

    assert _collect(duck, tasks) == _collect(ArchiveScan(archive), tasks)
    assert duck.stats.path == "athena-sql-on-duckdb" and "COALESCE(" in duck.last_query


@settings(max_examples=40, deadline=None)
@given(st.lists(numbers.filter(lambda n: n.copy_abs() <= MAX_DOUBLE), min_size=1, max_size=20))
def test_the_sql_key_of_an_archived_metric_is_the_key_of_its_number(values: list[Decimal]) -> None:
    texts = [str(v) for v in values]
    select = " UNION ALL ".join(
        f"SELECT {n} AS n, {number_key_sql(repr_)} AS k"
        for n, repr_ in enumerate("'" + t + "'" for t in texts)
    )
    connection = duckdb.connect()
    try:
        found = dict(connection.execute(to_duckdb(select)).fetchall())
    finally:
        connection.close()

    assert [found[n] for n in range(len(texts))] == [number_key(v) for v in values]


def test_a_filter_cell_written_as_sql_injection_filters_like_the_in_lambda_path() -> None:
    """``name = "x' OR '1'='1"`` and a name spelled like SQL both stay text in the query."""
    archive = _archive(
        [
            {"user": "amy", "day": 3, "attributes": {"name": HOSTILE}, "metrics": {}},
            {"user": "bob", "day": 3, "attributes": {"name": "x"}, "metrics": {}},
            {"user": "cy", "day": 3, "attributes": {HOSTILE: "1"}, "metrics": {}},
        ]
    )
    rows = [
        date_row("greater", "0", Filter=f'name = "{HOSTILE}"', OutputName="trk_a"),
        date_row("greater", "0", Filter=f"`{HOSTILE}` exists", OutputName="trk_b"),
        date_row("greater", "0", Filter="name = x' OR '1'='1", OutputName="trk_c"),
    ]
    parsed = parse_rules(enumerate(rows, start=2))
    assert [e.row for e in parsed.errors] == [4]
    tasks = [
        BackfillTask(SeriesPlan(r.series, (r,), ACTIVATION, STARTS), date(2026, 3, 1), True)
        for r in parsed.rules
    ]

    found = _collect(DuckDbBackfill(archive), tasks)

    assert found == _collect(ArchiveScan(archive), tasks)
    assert [sorted(found[t.plan.series]) for t in tasks] == [["amy"], ["cy"]]


FILTERED_ROWS = [
    date_row(
        "greater", "0", Filter='plan in ("gold", "Gold") and not price < 1e3', OutputName="trk_gold_big"
    ),
    date_row(
        "na", "999", "greater", "0", Filter="price != -0", MetricName="price", OutputName="trk_sum_nonzero"
    ),
    date_row("greater", "0", Filter='`first name` starts with "é" or qty exists', OutputName="trk_named"),
]


def _evaluated(dynamodb: Any, archive: _Archive, engine: BackfillEngine, table: str) -> dict[str, Any]:
    create_table(dynamodb, table, ttl=True)
    evaluator = Evaluator(
        RulesetTable(dynamodb, RULESET_TABLE).current,
        RollupStore(dynamodb, table),
        CoverageTable(dynamodb, table),
        [],
        zone=ZoneInfo("UTC"),
        retention_days=400,
        archive=archive,
        backfill=engine,
    )
    report = evaluator.run(datetime(2026, 3, 12, 12, tzinfo=UTC))
    assert not report.failures
    store = RollupStore(dynamodb, table)
    series = {r.series for r in parse_rules(enumerate(FILTERED_ROWS, start=2)).rules}
    rollups = {r.key: (r.backfill, r.endpoints) for s in series for r in store.series_rollups(s)}
    return {"rollups": rollups, "summary": report.summary()}


def test_filtered_date_rules_backfill_on_the_sql_path_to_the_same_rollups(dynamodb: Any) -> None:
    drawn = [
        {"user": f"user-{n % 5}", "day": 2 + n % 8, "attributes": attributes, "metrics": metrics}
        for n, (attributes, metrics) in enumerate(
            [
                ({"plan": "gold"}, {"price": Decimal("1E+3")}),
                ({"plan": "Gold"}, {"price": Decimal("999.999")}),
                ({"plan": "gold "}, {"price": Decimal("5000")}),
                ({"first name": "e\u0301mile"}, {"price": Decimal("-0")}),
                ({"first name": "émile"}, {"qty": Decimal("1")}),
                ({"plan": "gold"}, {}),
                ({}, {"price": Decimal("1E-400")}),
            ]
            * 9
        )
    ]
    archive = _archive(drawn)
    publish(dynamodb, FILTERED_ROWS, ACTIVATION, datetime(2026, 3, 9, tzinfo=UTC))

    in_lambda = _evaluated(dynamodb, archive, ArchiveScan(archive), "pia-timeseries-lambda")
    routed = SizedBackfill(archive, ArchiveScan(archive), DuckDbBackfill(archive), LambdaLimit(objects=3))
    on_sql = _evaluated(dynamodb, archive, routed, "pia-timeseries-sql")

    assert on_sql["summary"]["backfill_path"] == "athena-sql-on-duckdb"
    assert in_lambda["summary"]["backfill_path"] == "in-lambda"
    assert on_sql["rollups"] == in_lambda["rollups"] and len(in_lambda["rollups"]) >= 14
    for key in ("backfilled", "backfill_events", "ready", "not_ready"):
        assert on_sql["summary"][key] == in_lambda["summary"][key], key
