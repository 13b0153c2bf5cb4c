"""A landed backfill's result is read a bounded page at a time, across files, from where the last
page stopped, whatever the files look like (gzip or plain, Athena's metadata beside them)."""

from __future__ import annotations

import gzip
import json

import pytest

from pia.timeseries.backfill import BackfillFailed, BackfillStats
from pia.timeseries.backfill_results import (
    MAX_PARTS,
    BackfillResults,
    MemoryObjects,
    part_prefix,
    result_parts,
    series_source,
    summary_row,
)


def _row(n: int) -> dict[str, object]:
    return {"series": "s", "user_id": f"u{n:03d}", "days": ["2026-03-03 1 0"], "endpoints": []}


def test_pages_cross_files_from_their_cursor_and_never_pass_the_bound() -> None:
    objects = MemoryObjects()
    source = series_source("backfill/r/", 0)
    where = part_prefix(source, 3)
    lines = [json.dumps(_row(n)) for n in range(23)]
    objects.put(f"{where}a.gz", gzip.compress("\n".join(lines[:10]).encode()))
    objects.put(f"{where}b", ("\n".join(lines[10:]) + "\n\n").encode())
    objects.put(f"{where}b.metadata", b"not rows")
    objects.put(f"{part_prefix(source, 4)}a.gz", gzip.compress(json.dumps(_row(99)).encode()))
    results = BackfillResults(objects)

    seen: list[object] = []
    cursor = None
    pages = 0
    while True:
        page = results.page(source, 3, cursor, 4)
        assert len(page.rows) <= 4
        seen.extend(row["user_id"] for row in page.rows)
        pages += 1
        cursor = page.cursor
        if cursor is None:
            break
    assert seen == [f"u{n:03d}" for n in range(23)] and pages == 6
    assert results.rows_read == 23


def test_a_result_without_its_counts_row_is_not_merged() -> None:
    objects = MemoryObjects()
    results = BackfillResults(objects, new_run=lambda: "r")
    prefix = results.new_prefix()
    results.write(prefix, [(0, 1, _row(1))])
    with pytest.raises(BackfillFailed, match="no counts row"):
        results.read_counts(prefix, BackfillStats())
    results.write(prefix, [(-1, 0, summary_row(12, 9, 1))])
    stats = BackfillStats()
    results.read_counts(prefix, stats)
    assert (stats.events, stats.duplicates, stats.bad_lines) == (9, 2, 1)


def test_one_computation_never_writes_more_parts_than_athena_can_open() -> None:
    """Athena's UNLOAD writes at most 100 partitions (the counts row is one): a series with 256
    rollup partitions, or seven new series of 16, share 99 parts."""
    assert result_parts({"a": 16}) == {"a": 16}
    assert result_parts({"a": 256}) == {"a": MAX_PARTS}
    seven = result_parts({f"s{n}": 16 for n in range(7)})
    assert set(seven.values()) == {14} and sum(seven.values()) + 1 <= 100
    many = result_parts({f"s{n}": 16 for n in range(MAX_PARTS)})
    assert set(many.values()) == {1}
    with pytest.raises(ValueError, match="at most 99 series"):
        result_parts({f"s{n}": 16 for n in range(MAX_PARTS + 1)})
