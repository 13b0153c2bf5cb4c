"""The benchmark's structural claims, at a size CI can afford, through the same code as ``make bench``.

These are counts of round trips and item reads, not timings: they hold at any size, so a regression
that adds a per-event read or call to the aggregator fails here before anyone runs the full bench.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.runs import Run, run_aggregator, run_baseline
from bench.scenario import Scenario, floor
from bench.world import World, aws_world

SMOKE = Scenario("smoke", users=20, events_per_user=10, batch_size=100)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        with aws_world() as made:
            yield made


@pytest.fixture(scope="module")
def runs(world: World) -> tuple[Run, Run]:
    return run_aggregator(world, SMOKE), run_baseline(world, SMOKE)


def test_aggregator_reads_no_item_per_event(runs: tuple[Run, Run]) -> None:
    ours, _ = runs
    assert ours.figures()["item_reads_per_event"] == 0
    assert ours.container_reads == 1, "one read of the ruleset pointer per cold container"


def test_aggregator_writes_each_changed_counter_once_per_batch_and_nothing_else_per_event(
    runs: tuple[Run, Run],
) -> None:
    """One conditional write per counter that changed in a batch (a settled one does not), 25 to a
    call, and one lane mark per batch that sent actions, never a write to clear a delivered one;
    every call is per batch, not per event."""
    ours, _ = runs
    bound = floor(SMOKE)
    assert ours.usage.round_trips["dynamodb.PutItem"] == bound.batches_with_crossings, (
        "one mark per batch that sent"
    )
    assert ours.usage.items_written == bound.unsettled_changes + bound.batches_with_crossings
    assert ours.usage.write_units == ours.usage.items_written, "each item under 1 KB: one unit per statement"
    assert ours.usage.calls / SMOKE.events <= 0.10, ours.usage.round_trips


def test_baseline_makes_at_least_ten_times_more_calls(runs: tuple[Run, Run]) -> None:
    ours, theirs = runs
    assert theirs.figures()["calls_per_event"] >= 10 * ours.figures()["calls_per_event"]


def test_meter_sees_every_call_including_those_the_pinpoint_recorder_answers(runs: tuple[Run, Run]) -> None:
    _, theirs = runs
    assert dict(theirs.usage.round_trips) == {
        "dynamodb.GetItem": 2 * SMOKE.events,
        "dynamodb.PutItem": SMOKE.events,
        "pinpoint.UpdateEndpoint": SMOKE.holds(),
    }
    assert theirs.usage.write_units == SMOKE.events, "one small item per PutItem is one write unit"


def test_the_athena_path_hands_the_evaluator_one_row_per_user_however_many_events() -> None:
    from bench.backfill_paths import USERS, measure

    small, larger = measure(500), measure(2_000)

    assert small.identical == larger.identical == 1
    assert larger.in_lambda_get_requests == larger.archive_objects > small.in_lambda_get_requests
    assert larger.athena_objects_scanned == larger.archive_objects and larger.athena_queries == 1
    assert small.athena_result_rows == larger.athena_result_rows == USERS + 1
