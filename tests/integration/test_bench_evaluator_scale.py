"""The evaluator scaling bench's claims (issue #12), at a size CI can afford, through the bench's code."""

from __future__ import annotations

from bench.evaluator_scale import measure, realtime_share


def test_an_idle_rerun_reads_no_rollup_and_a_due_run_reads_only_the_due_users() -> None:
    row = measure(600)
    assert row.due_users > 0
    assert (row.idle_rollups_read, row.idle_rerun_rollups_read) == (0, 0)
    assert row.idle_items_read <= 10 and row.idle_rerun_items_read <= 10
    assert row.due_rollups_read == row.due_not_ready == row.due_users
    assert row.most_unit_rollups <= row.unit_bound and row.sweep_unit_rollups <= row.unit_bound
    assert row.backfill_unit_most_rows <= row.unit_bound and row.backfill_unit_most_rollups <= row.unit_bound
    assert row.backfill_unit_most_rows > 0


def test_the_real_time_path_writes_the_due_index_only_when_a_due_moment_is_added_or_moved() -> None:
    share = realtime_share()
    assert share.due_index_write_units < share.write_units / 10
