"""The evaluator reads only what is due, in bounded units, on a series' own partition count (moto)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from pia.core.actions import READY
from pia.rules.model import Rule
from pia.rules.ruleset import RulesetTable
from pia.targets.factory import build_targets
from pia.timeseries.evaluator import Evaluator
from pia.timeseries.rollups import DayTotal, SeriesRollup, load_zone
from pia.timeseries.store import CoverageTable, RollupStore, rollup_item
from pia.timeseries.units import SWEEP
from tests.conftest import RULESET_TABLE, TIMESERIES_TABLE
from tests.integration.timeseries_support import date_row, doc, publish, use_partitions

DAY = datetime(2026, 3, 20, 6, tzinfo=UTC)


def _rolling(stack: Any, partitions: dict[str, int] | None = None) -> Rule:
    """A 7-day rolling rule, "at least one purchase", published with an optional partition layout."""
    row = date_row("greater_or_equal", "1", start="9999-99-99", finish="9999-99-99", Window="last 7 days")
    (rule,) = publish(stack.dynamodb, [row], "2026-01-01", DAY - timedelta(days=30)).rules
    if partitions:
        use_partitions(stack.dynamodb, partitions)
    return rule


def _seed(stack: Any, rule: Rule, last_days: dict[str, date], buckets: int = 16) -> None:
    """Users already marked ready, each with one purchase on their given day (written as the
    aggregator would have, with no due moment: the first run sweeps)."""
    requests = [
        {
            "PutRequest": {
                "Item": rollup_item(
                    SeriesRollup(
                        rule.series,
                        user,
                        version=1,
                        activation="2026-01-01",
                        backfill_activation="2026-01-01",
                        days={day: DayTotal(1, Decimal(0))},
                        sent={rule.rule_id: READY},
                        endpoints=(f"ep-{user}",),
                    ),
                    1_772_000_000,
                    400,
                    buckets,
                )
            }
        }
        for user, day in last_days.items()
    ]
    for n in range(0, len(requests), 25):
        stack.dynamodb.batch_write_item(RequestItems={TIMESERIES_TABLE: requests[n : n + 25]})


def _evaluator(stack: Any, unit_limit: int = 2_000) -> Evaluator:
    from pia.settings import TargetSettings

    dynamodb = stack.calls("dynamodb")
    return Evaluator(
        RulesetTable(dynamodb, RULESET_TABLE).current,
        RollupStore(dynamodb, TIMESERIES_TABLE),
        CoverageTable(dynamodb, TIMESERIES_TABLE),
        build_targets(TargetSettings.from_env(), stack.calls),
        zone=load_zone("UTC"),
        retention_days=400,
        unit_limit=unit_limit,
    )


def test_a_rerun_reads_only_the_users_whose_window_slid(timeseries_stack: Any) -> None:
    stack = timeseries_stack
    rule = _rolling(stack)
    today = DAY.date()
    users = {f"user-{u:03d}": today - timedelta(days=u % 5) for u in range(60)}
    _seed(stack, rule, users)

    first = _evaluator(stack).run(DAY)
    assert (first.rollups_read, first.not_ready) == (60, 0)
    assert _evaluator(stack).run(DAY + timedelta(hours=1)).rollups_read == 0

    # Three days on, the users whose purchase was 4 days old see it slide out of the 7 days.
    later = _evaluator(stack).run(DAY + timedelta(days=3))
    assert (later.rollups_read, later.not_ready) == (12, 12)
    # The handler, with the archive: its first run backfills the series (reading it whole, once).
    assert stack.evaluate(DAY + timedelta(days=3, hours=1))["backfilled"] == [rule.series]
    stack.calls.reset()
    summary = stack.evaluate(DAY + timedelta(days=3, hours=2))
    assert summary["rollups_read"] == 0 and stack.calls.items_read <= 10


def test_a_partition_with_more_due_than_the_bound_continues_in_follow_up_units(timeseries_stack: Any) -> None:
    stack = timeseries_stack
    rule = _rolling(stack, partitions={})
    today = DAY.date()
    _seed(stack, rule, {f"user-{u:03d}": today - timedelta(days=6) for u in range(40)}, buckets=16)
    evaluator = _evaluator(stack, unit_limit=3)
    plan = evaluator.plan(DAY)
    assert len(plan.units) == 16 and {u.mode for u in plan.units} == {SWEEP}
    reports = []
    for first in plan.units:
        unit = first
        while unit is not None:
            reports.append(evaluator.run_unit(unit, DAY))
            unit = reports[-1].more
    assert max(r.rollups_read for r in reports) == 3 and sum(r.rollups_read for r in reports) == 40
    assert len(reports) > 16
    done = evaluator.finish(plan, reports, DAY)
    assert (done.rollups_read, done.units, done.most_unit_rollups) == (40, len(reports), 3)

    tomorrow = DAY + timedelta(days=1)
    assert {u.mode for u in evaluator.plan(tomorrow).units} == {"due"}
    report = _evaluator(stack, unit_limit=3).run(tomorrow)
    assert (report.rollups_read, report.not_ready, report.most_unit_rollups) == (40, 40, 3)


def test_a_series_keeps_the_partition_count_it_was_created_with(timeseries_stack: Any) -> None:
    stack = timeseries_stack
    stack.clock.now = DAY
    rule = _rolling(stack, partitions={})
    rule = _rolling(stack, partitions={rule.series: 3})
    stack.restart()
    stack.aggregate([doc(f"user-{u}", DAY - timedelta(hours=1)) for u in range(12)], start=1)
    store = RollupStore(stack.dynamodb, TIMESERIES_TABLE)
    store.use_layout({rule.series: 3})
    assert len(store.series_rollups(rule.series)) == 12
    keys = {item["pk"]["S"] for item in stack.dynamodb.scan(TableName=TIMESERIES_TABLE)["Items"]}
    assert {k for k in keys if k.startswith("S#")} <= {f"S#{rule.series}#{p:02d}" for p in range(3)}

    plan = _evaluator(stack).plan(DAY + timedelta(hours=1))
    assert [u.partition for u in plan.units] == [0, 1, 2]


def test_the_aggregator_keeps_the_due_moment_of_what_it_writes(timeseries_stack: Any) -> None:
    stack = timeseries_stack
    stack.clock.now = DAY
    rule = _rolling(stack)
    stack.restart()
    stack.aggregate([doc("amy", DAY - timedelta(hours=1))], start=1)
    stored = stack.rollups().load(rule.series, "amy")
    assert stored.sent == {rule.rule_id: READY}
    assert stored.wake == int(datetime(2026, 3, 27, tzinfo=UTC).timestamp())

    # The aggregator's write is the only one: the evaluator's first run sweeps, its rerun reads nothing
    # until amy's purchase slides out.
    assert _evaluator(stack).run(DAY + timedelta(hours=1)).rollups_read == 1
    assert _evaluator(stack).run(DAY + timedelta(days=6, hours=1)).rollups_read == 0
    last = _evaluator(stack).run(DAY + timedelta(days=7))
    assert (last.rollups_read, last.not_ready) == (1, 1)


def test_a_rollup_is_written_back_under_the_partition_count_it_was_read_with(timeseries_stack: Any) -> None:
    """The relay's store knows no ruleset: a rollup of a 3-partition series must stay where it is."""
    from pia.core.state import StateWrite
    from pia.timeseries.rollups import SeriesKey
    from pia.timeseries.store import rollup_from_item, rollup_key

    dynamodb = timeseries_stack.dynamodb
    state = SeriesRollup("purchase", "amy", version=1, days={date(2026, 3, 19): DayTotal(2, Decimal(0))})
    dynamodb.put_item(TableName=TIMESERIES_TABLE, Item=rollup_item(state, 1_772_000_000, 400, 3))
    read = rollup_from_item(
        dynamodb.get_item(TableName=TIMESERIES_TABLE, Key=rollup_key("purchase", "amy", 3))["Item"]
    )
    assert read.partitions == 3
    relay_store = RollupStore(dynamodb, TIMESERIES_TABLE)
    outcome = relay_store.commit([StateWrite(SeriesKey("purchase", "amy"), read.with_version(2), 1)], 1)
    assert outcome.reasons == {}
    items = dynamodb.scan(TableName=TIMESERIES_TABLE)["Items"]
    assert [(i["pk"]["S"], i["v"]["N"]) for i in items] == [
        (rollup_key("purchase", "amy", 3)["pk"]["S"], "2")
    ]
