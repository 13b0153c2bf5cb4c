"""The bench's claim for the Filter column (issue #16), at smoke size: a three-clause filter every
event passes costs exactly the calls and write units of no filter."""

from __future__ import annotations

import pytest

from bench import filters
from bench.runs import Run, run_aggregator
from bench.scenario import Scenario
from bench.world import aws_world

SMOKE = Scenario("smoke", users=20, events_per_user=10, batch_size=100)


def run(filter_text: str | None) -> Run:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        with aws_world(filters.ruleset(filter_text)) as world:
            assert (world.ruleset.rules[0].filter is None) is (filter_text is None)
            return run_aggregator(world, SMOKE)


def test_a_three_clause_filter_costs_no_write_unit_more_than_no_filter() -> None:
    plain, filtered = run(None), run(filters.THREE_CLAUSES)
    assert filtered.usage.write_units == plain.usage.write_units
    assert filtered.usage.calls == plain.usage.calls
