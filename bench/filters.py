"""What the Filter column costs (issue #16): write units on moto, and CPU with 50 filtered rules.

A filter is evaluated in memory on events the batch already holds; the counter item it leads to is
the same item an unfiltered rule writes. So a three-clause filter that every event passes must cost
exactly the write units of no filter, and its only price is CPU, measured with 50 such rules live.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bench import cpu
from bench.runs import OUTPUT_NAME, run_aggregator
from bench.scenario import RULE_ROW, Scenario
from bench.world import aws_world
from pia.rules.ruleset import Ruleset
from pia.rules.table import parse_rules

THREE_CLAUSES = 'screen = "home" and clicks >= 1 and not coupon exists'
"""Every bench event passes it (``screen`` is ``home``, ``clicks`` is 1, no ``coupon``), so the
filtered rule counts what the unfiltered one does, and every clause is evaluated for every event."""
FAILING_FIRST = 'screen = "checkout" and clicks >= 1 and not coupon exists'
"""No bench event passes it, and the first clause decides: the cheapest a filter can be."""
LIVE_RULES = 50
ALL_PASS = f"{LIVE_RULES} rules, 3-clause filter, all pass"


def ruleset(filter_text: str | None, rules: int = 1) -> Ruleset:
    """``rules`` aggregate rules on the bench event, each its own counter (their count targets
    differ), with ``filter_text`` in each; the first writes the output the bench run checks."""
    rows = []
    for index in range(rules):
        row: dict[str, object] = {**RULE_ROW, "Target-C": str(5 + index)}
        row["OutputName"] = OUTPUT_NAME if index == 0 else f"{OUTPUT_NAME}_{index}"
        if filter_text is not None:
            row["Filter"] = filter_text
        rows.append((index + 2, row))
    parsed = parse_rules(rows)
    if parsed.errors or len(parsed.rules) != rules:
        raise ValueError(f"bench filter rules do not parse: {parsed.errors}")
    published = datetime.now(UTC).isoformat()
    return Ruleset(version=1, rules=parsed.rules, published_at=published, source="bench")


@dataclass(frozen=True)
class FilterCost:
    write_units_per_event: float
    unfiltered_write_units_per_event: float
    cpu_us_per_record: dict[str, float]

    @property
    def write_unit_ratio(self) -> float:
        return self.write_units_per_event / self.unfiltered_write_units_per_event

    def to_json(self) -> dict[str, Any]:
        return {
            "filter": THREE_CLAUSES,
            "write_units_per_event": self.write_units_per_event,
            "unfiltered_write_units_per_event": self.unfiltered_write_units_per_event,
            "live_rules": LIVE_RULES,
            "cpu_us_per_record": self.cpu_us_per_record,
        }


def measure(scenario: Scenario, unfiltered_write_units_per_event: float, repeats: int = 3) -> FilterCost:
    """``unfiltered_write_units_per_event`` comes from the main run of the same scenario."""
    with aws_world(ruleset(THREE_CLAUSES)) as world:
        filtered = run_aggregator(world, scenario)
    timings = {
        "1 rule, no filter": None,
        f"{LIVE_RULES} rules, no filter": ruleset(None, LIVE_RULES),
        ALL_PASS: ruleset(THREE_CLAUSES, LIVE_RULES),
        f"{LIVE_RULES} rules, 3-clause filter, first clause fails": ruleset(FAILING_FIRST, LIVE_RULES),
    }
    cpu_us = {name: cpu.measure(scenario, repeats, live).ours_us_per_record for name, live in timings.items()}
    return FilterCost(filtered.figures()["write_units_per_event"], unfiltered_write_units_per_event, cpu_us)
