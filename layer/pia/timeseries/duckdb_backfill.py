"""Athena's stand-in for local runs and tests: the same backfill query, run by DuckDB.

moto cannot execute Athena queries. This adapter copies the window's archive objects (the same
listing the evaluator reads from) into a temporary folder, declares over them a view shaped like the
Glue table (the archive's columns, ``"$path"``, and the ``datehour`` partition taken from the key),
and runs the query text written for Athena, transpiled from Trino's dialect to DuckDB's by sqlglot.

Only local runs import it: ``duckdb`` and ``sqlglot`` are development dependencies, not the
evaluator's layer.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import duckdb
import sqlglot
from sqlglot import exp

from pia.timeseries.archive import PREFIX, listing_start
from pia.timeseries.backfill import (
    DEFAULT_UNIT_USERS,
    BackfillStats,
    BackfillTask,
    HistoryUnit,
    listing_day,
)
from pia.timeseries.backfill_results import BackfillResults
from pia.timeseries.backfill_sql import (
    ARCHIVE_COLUMNS,
    PARTITION,
    RAW_EVENTS_TABLE,
    backfill_query,
    units_from_rows,
)

DUCKDB_PATH = "athena-sql-on-duckdb"
FETCH_ROWS = 1_000
_DUCKDB_TYPES = {"string": "VARCHAR", "map<string,string>": "MAP(VARCHAR, VARCHAR)"}


class ArchiveFiles(Protocol):
    def entries(self, *, start_after: str = "", prefix: str = "raw/") -> Iterator[tuple[str, int]]: ...

    def body(self, key: str) -> bytes: ...


def _from_base(node: exp.Expression) -> exp.Expression:
    """Trino's ``from_base(hex, 16)`` (the result part's hash) has no DuckDB name: a hex literal cast."""
    if isinstance(node, exp.FromBase):
        text = exp.DPipe(this=exp.Literal.string("0x"), expression=node.this)
        return exp.Cast(this=text, to=exp.DataType.build("BIGINT"))
    return node


def to_duckdb(trino_sql: str) -> str:
    tree = sqlglot.parse_one(trino_sql, read="trino").transform(_from_base).transform(_map_transform_values)
    return str(tree.sql(dialect="duckdb"))


def _map_transform_values(node: exp.Expression) -> exp.Expression:
    """Trino's ``transform_values(m, (k, v) -> f(v))``, which DuckDB lacks and sqlglot passes through,
    as ``map(map_keys(m), list_transform(map_values(m), v -> f(v)))``: the same keys, in the order
    DuckDB lists both."""
    if not (isinstance(node, exp.Anonymous) and node.name.lower() == "transform_values"):
        return node
    target, function = node.expressions
    _, value = function.expressions
    values = exp.Anonymous(this="map_values", expressions=[target.copy()])
    transformed = exp.Anonymous(
        this="list_transform", expressions=[values, exp.Lambda(this=function.this, expressions=[value])]
    )
    return exp.Anonymous(
        this="map", expressions=[exp.Anonymous(this="map_keys", expressions=[target]), transformed]
    )


def _columns() -> str:
    return ", ".join(f"'{name}': '{_DUCKDB_TYPES[kind]}'" for name, kind in ARCHIVE_COLUMNS.items())


def declare_archive(connection: Any, root: Path, objects: int) -> None:
    """The Glue table's shape over local files; an empty window is an empty table, not an error."""
    columns = ", ".join(f"{name} {_DUCKDB_TYPES[kind]}" for name, kind in ARCHIVE_COLUMNS.items())
    if not objects:
        connection.execute(
            f'CREATE TABLE {RAW_EVENTS_TABLE} ({columns}, "$path" VARCHAR, {PARTITION} VARCHAR)'
        )
        return
    pattern = (root / PREFIX / "*" / "*" / "*" / "*" / "*").as_posix()
    connection.execute(
        f"""CREATE VIEW {RAW_EVENTS_TABLE} AS
        SELECT * EXCLUDE (filename), filename AS "$path",
          regexp_extract(filename, '{PREFIX}([0-9]{{4}}/[0-9]{{2}}/[0-9]{{2}}/[0-9]{{2}})/', 1) AS {PARTITION}
        FROM read_json('{pattern}', format = 'newline_delimited', compression = 'gzip',
          ignore_errors = true, filename = true, columns = {{{_columns()}}})"""
    )


class DuckDbBackfill:
    def __init__(self, archive: ArchiveFiles, *, unit_users: int = DEFAULT_UNIT_USERS) -> None:
        self._archive = archive
        self._unit_users = unit_users
        self._stats = BackfillStats(DUCKDB_PATH)
        self.last_query = ""

    @property
    def stats(self) -> BackfillStats:
        return self._stats

    def histories(self, tasks: Sequence[BackfillTask], zone: ZoneInfo) -> Iterator[HistoryUnit]:
        stats = self._stats = BackfillStats(DUCKDB_PATH, queries=1)
        yield from units_from_rows(self._rows(tasks, zone, stats), stats, self._unit_users)

    def land(
        self,
        tasks: Sequence[BackfillTask],
        zone: ZoneInfo,
        results: BackfillResults,
        parts: Mapping[str, int],
    ) -> str:
        """As Athena's partitioned ``UNLOAD``: each row is written where its ``sx`` and ``part`` columns,
        computed by the query, say."""
        stats = self._stats = BackfillStats(DUCKDB_PATH, queries=1)
        prefix = results.new_prefix()
        rows = self._rows(tasks, zone, stats, parts)
        results.write(prefix, ((int(str(r.pop("sx"))), int(str(r.pop("part"))), r) for r in rows))
        results.read_counts(prefix, stats)
        return prefix

    def rows(
        self, tasks: Sequence[BackfillTask], zone: ZoneInfo, *, parts: Mapping[str, int] | None = None
    ) -> Iterator[dict[str, object]]:
        """The query's result rows, as Athena's ``UNLOAD`` would write them (with ``parts``: each
        with the ``sx`` and ``part`` it is written under)."""
        stats = self._stats = BackfillStats(DUCKDB_PATH, queries=1)
        return self._rows(tasks, zone, stats, parts)

    def _rows(
        self,
        tasks: Sequence[BackfillTask],
        zone: ZoneInfo,
        stats: BackfillStats,
        parts: Mapping[str, int] | None = None,
    ) -> Iterator[dict[str, object]]:
        self.last_query = backfill_query(tasks, zone, parts=parts)
        with tempfile.TemporaryDirectory(prefix="pia-archive-") as folder:
            root = Path(folder)
            for key, size in self._archive.entries(start_after=listing_start(listing_day(tasks))):
                path = root / key
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(self._archive.body(key))
                stats.objects_scanned += 1
                stats.bytes_scanned += size
            connection = duckdb.connect()
            try:
                connection.execute("SET TimeZone = 'UTC'")
                connection.execute("SET enable_progress_bar = false")
                declare_archive(connection, root, stats.objects_scanned)
                cursor = connection.execute(to_duckdb(self.last_query))
                names = [d[0] for d in cursor.description or ()]
                while batch := cursor.fetchmany(FETCH_ROWS):
                    for values in batch:
                        yield dict(zip(names, values, strict=True))
            finally:
                connection.close()
