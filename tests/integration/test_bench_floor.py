"""The sessions bench's floor, at a size CI can afford: the write units the scenario itself says the
exactly-once path needs are all the aggregator writes (``make bench`` reports the same figures at
1,000 users)."""

from __future__ import annotations

import pytest

from bench.runs import run_aggregator
from bench.scenario import Sessions, floor
from bench.world import aws_world


@pytest.mark.parametrize("records_per_second", [1.0, 1000.0], ids=["quiet", "busy"])
def test_sessions_write_units_are_the_floor_the_scenario_computes_plus_the_sent_marks(
    monkeypatch: pytest.MonkeyPatch, records_per_second: float
) -> None:
    """``make bench``'s floor: what the scenario says must be durable per batch, computed from the
    stream and the rule alone, is all the aggregator writes besides one sent mark per batch that sent."""
    scenario = Sessions(
        f"sessions-{records_per_second:g}",
        users=40,
        batch_size=100,
        window_seconds=120,
        records_per_second=records_per_second,
    )
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with aws_world() as world:
        ours = run_aggregator(world, scenario)
    bound = floor(scenario)
    assert ours.usage.write_units == bound.unsettled_changes + bound.batches_with_crossings
