"""The evaluator's scaling table (issue #12): what a run reads as a series grows from 1,000 to 100,000
users, and the extrapolation to 10 million users and 1 billion archived events.

One series per size, one rolling rule ("at least 3 events in the last 30 days"). Each user has 1 to 8
active days in the 30 days before the run, 1 to 5 events a day (seeded, so every run draws the same
users). The rollups are written directly, as the aggregator would have left them (the value last
sent, and the due moment of each), 25 to a BatchWriteItem, with the rules' signature recorded, so
no run starts with a sweep. Then, metered:
- ``idle``: a run the same morning: nothing is due;
- ``due``: a run the next morning: the users whose window loses the day that kept them ready;
- ``idle_rerun``: an hour after that.
Per size: items read on each run (the rollups it fetched, and every DynamoDB item it read, index
entries and coverage items included), units and the most rollups one unit read; peak memory
(tracemalloc) of one full sweep unit, the largest a unit can be; the units that merge one part of a
landed backfill of every user, and the most result rows and rollups one of them read (each user's
days written as its backfill result, laid out as the engines lay it); and the backfill's input for the
same users' history, modelled, not run: in-Lambda the evaluator reads every event (100 bytes gzipped
each, docs/SCALE.md's figure for a real Pinpoint event), on Athena only one result row per user
(110 bytes: a month of day totals as a JSON line). ``bench/backfill_paths.py`` runs both paths for
real on a smaller archive.

The real-time path's share: 200 users' events over 5 days through :class:`TimeSeriesPath` with the
same rule, metered, gives the write units of its rollup writes and those of the ``due`` index.

Every size runs the project's own adapters (``RollupStore``, ``CoverageTable``) over the in-memory
DynamoDB stand-in of :mod:`bench.dynamodb_standin` (moto scans the whole table for every index query:
minutes a run at 100,000 users), which bills like :mod:`bench.metering`, and ends Query pages at 1 MB
as DynamoDB does. At 1,000 users moto gives the same counts. Everything counted is a count of
requests, items or bytes, never a time.
"""

from __future__ import annotations

import random
import tracemalloc
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from bench.cost import PRICES
from bench.dynamodb_standin import StandInDynamoDB, StandInUsage
from bench.scenario import EVENT_NAME, RULE_ROW
from pia.core.actions import READY
from pia.core.events import Event
from pia.core.state import CommitSettings, StateCache
from pia.counting.aggregator import InboundRecord
from pia.counting.counters import Position
from pia.rules.model import Rule
from pia.rules.ruleset import Ruleset
from pia.rules.table import parse_rules
from pia.settings import DEFAULT_UNIT_ROLLUPS
from pia.timeseries.backfill import UserHistory
from pia.timeseries.backfill_results import (
    BackfillResults,
    MemoryObjects,
    history_row,
    result_part,
    series_source,
)
from pia.timeseries.evaluator import EvaluationReport, Evaluator
from pia.timeseries.realtime import TimeSeriesPath
from pia.timeseries.rollups import (
    DayTotal,
    SeriesRollup,
    is_met,
    next_change,
    plan_series,
    rules_signature,
    wake_at,
)
from pia.timeseries.store import ROLLUP_BUCKETS, CoverageTable, RollupStore, rollup_item
from pia.timeseries.units import BACKFILL, SWEEP, WorkUnit

SIZES = (1_000, 10_000, 100_000)
WINDOW_DAYS = 30
TODAY = date(2026, 10, 30)
RUN = datetime(2026, 10, 30, 6, tzinfo=UTC)
UTC_ZONE = ZoneInfo("UTC")
SEED_MOMENT = 1_793_000_000
REALTIME_USERS = 200
REALTIME_DAYS = 5
BATCHES_PER_DAY = 10

EXTRAPOLATED_USERS = 10_000_000
EXTRAPOLATED_EVENTS = 1_000_000_000
EXTRAPOLATED_PARTITIONS = 256
"""``RollupPartitions`` for a 10-million-user series: about 39,000 rollups per partition, so a sweep
unit chain is 20 units of 2,000 and each partition's writes stay far under 1,000 a second."""
UNIT_MEMORY_MB = 1024
UNIT_ROUND_TRIP_MS = 5
"""The bench's model of one in-region DynamoDB round trip (``bench.cost``); a unit's duration is its
round trips at that rate, plus 1 ms of evaluation per rollup (pandas on a frame of that size)."""
STEP_FUNCTIONS_TRANSITION_USD = Decimal("0.000025")
"""Step Functions Standard, us-east-1: $0.025 per 1,000 state transitions (about 3 per unit in a Map)."""
BACKFILL_BYTES_PER_EVENT = 100
"""docs/SCALE.md's assumption for a real Pinpoint event in the gzipped archive (the bench's own
synthetic events compress to about 14 bytes)."""
BACKFILL_BYTES_PER_ROW = 110


def rolling_rule() -> Rule:
    row = {**RULE_ROW, "RuleType": "date", "Operator-C": "greater_or_equal", "Target-C": "3"}
    row["Window"] = f"last {WINDOW_DAYS} days"
    (rule,) = parse_rules(enumerate([row], start=2)).rules
    return rule


def scale_ruleset(rule: Rule) -> Ruleset:
    return Ruleset(version=1, rules=(rule,), published_at="2026-09-01T00:00:00+00:00")


def _users(size: int, rule: Rule) -> list[SeriesRollup]:
    """Each user as the aggregator left it: days, the value sent for today, and the due moment."""
    draw = random.Random(size)
    states: list[SeriesRollup] = []
    for u in range(size):
        days = {
            TODAY - timedelta(days=d): DayTotal(draw.randint(1, 5), Decimal(0))
            for d in draw.sample(range(WINDOW_DAYS), draw.randint(1, 8))
        }
        state = SeriesRollup(rule.series, f"user-{u:07d}", version=1, days=days)
        first = TODAY - timedelta(days=WINDOW_DAYS - 1)
        if is_met(rule, state.window_total(first, TODAY)):
            state = SeriesRollup(rule.series, state.user_id, version=1, days=days, sent={rule.rule_id: READY})
        wake = wake_at(next_change(state, (rule,), TODAY), UTC_ZONE)
        states.append(replace(state, wake=wake))
    return states


TIMESERIES_TABLE = "pia-bench-timeseries"


def _seed(dynamodb: StandInDynamoDB, ruleset: Ruleset, rule: Rule, states: list[SeriesRollup]) -> None:
    requests = [{"PutRequest": {"Item": rollup_item(s, SEED_MOMENT, 400, ROLLUP_BUCKETS)}} for s in states]
    for n in range(0, len(requests), 25):
        dynamodb.batch_write_item(RequestItems={TIMESERIES_TABLE: requests[n : n + 25]})
    (plan,) = plan_series(ruleset, TODAY).values()
    CoverageTable(dynamodb, TIMESERIES_TABLE).record_signature(  # type: ignore[arg-type]
        rule.series, rules_signature(plan, TODAY), SEED_MOMENT
    )
    dynamodb.usage = StandInUsage()


def _evaluator(
    dynamodb: StandInDynamoDB, ruleset: Ruleset, results: BackfillResults | None = None
) -> Evaluator:
    return Evaluator(
        lambda: ruleset,
        RollupStore(dynamodb, TIMESERIES_TABLE),  # type: ignore[arg-type]
        CoverageTable(dynamodb, TIMESERIES_TABLE),  # type: ignore[arg-type]
        [],
        zone=UTC_ZONE,
        retention_days=400,
        results=results,
    )


@dataclass(frozen=True)
class RunFigures:
    rollups_read: int
    items_read: int
    read_units: float
    write_units: int
    units: int
    most_unit_rollups: int
    not_ready: int


def _metered_run(dynamodb: StandInDynamoDB, ruleset: Ruleset, at: datetime) -> RunFigures:
    dynamodb.usage = usage = StandInUsage()
    report: EvaluationReport = _evaluator(dynamodb, ruleset).run(at)
    return RunFigures(
        report.rollups_read,
        usage.items_read,
        usage.read_units,
        usage.write_units,
        report.units,
        report.most_unit_rollups,
        report.not_ready,
    )


def _sweep_unit(
    dynamodb: StandInDynamoDB, ruleset: Ruleset, rule: Rule, at: datetime
) -> tuple[int, int, float]:
    """One sweep unit of partition 0 at the default bound, the largest a unit can be: its peak traced
    memory (the stored items are the table's, not the unit's), the rollups it read, the read units."""
    evaluator = _evaluator(dynamodb, ruleset)
    unit = WorkUnit(rule.series, 0, int(at.timestamp()), DEFAULT_UNIT_ROLLUPS, mode=SWEEP)
    dynamodb.usage = usage = StandInUsage()
    tracemalloc.start()
    try:
        report = evaluator.run_unit(unit, at)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, report.rollups_read, usage.read_units


def _backfill_results(rule: Rule, states: list[SeriesRollup]) -> tuple[BackfillResults, str]:
    """Every user's history as a landed backfill result, laid out by part as the engines write it."""
    results = BackfillResults(MemoryObjects())
    prefix = results.new_prefix()
    results.write(
        prefix,
        (
            (
                0,
                result_part(s.user_id, ROLLUP_BUCKETS),
                history_row(rule.series, s.user_id, UserHistory(dict(s.days))),
            )
            for s in states
        ),
    )
    return results, series_source(prefix, 0)


def _backfill_part(
    dynamodb: StandInDynamoDB,
    ruleset: Ruleset,
    rule: Rule,
    results: BackfillResults,
    source: str,
    at: datetime,
) -> tuple[int, int, int]:
    """Part 0 of a landed backfill merged at the default bound, with its follow-ups: the units it took,
    and the most result rows and rollups one of them read."""
    evaluator = _evaluator(dynamodb, ruleset, results)
    unit: WorkUnit | None = WorkUnit(
        rule.series, 0, int(at.timestamp()), DEFAULT_UNIT_ROLLUPS, mode=BACKFILL, source=source
    )
    units = most_rows = most_rollups = 0
    while unit is not None:
        report = evaluator.run_unit(unit, at)
        units += 1
        most_rows = max(most_rows, report.most_unit_rows)
        most_rollups = max(most_rollups, report.most_unit_rollups)
        unit = report.more
    return units, most_rows, most_rollups


@dataclass(frozen=True)
class ScaleRow:
    users: int
    partitions: int
    due_users: int
    idle_rollups_read: int
    idle_items_read: int
    due_rollups_read: int
    due_items_read: int
    due_read_units: float
    due_write_units: int
    due_not_ready: int
    idle_rerun_rollups_read: int
    idle_rerun_items_read: int
    units: int
    most_unit_rollups: int
    unit_bound: int
    sweep_unit_rollups: int
    sweep_unit_read_units: float
    sweep_unit_peak_kib: int
    backfill_in_lambda_bytes: int
    backfill_athena_result_bytes: int
    backfill_part_units: int
    """Units (follow-ups included) that merge one part of a landed backfill of every user."""
    backfill_unit_most_rows: int
    backfill_unit_most_rollups: int

    def figures(self) -> dict[str, Any]:
        return asdict(self)


def measure(size: int) -> ScaleRow:
    rule = rolling_rule()
    states = _users(size, rule)
    tomorrow = wake_at(TODAY + timedelta(days=1), UTC_ZONE)
    due_users = sum(1 for s in states if 0 < s.wake <= tomorrow)
    events = sum(t.count for s in states for t in s.days.values())
    ruleset = scale_ruleset(rule)
    dynamodb = StandInDynamoDB()
    _seed(dynamodb, ruleset, rule, states)
    results, source = _backfill_results(rule, states)
    del states
    idle = _metered_run(dynamodb, ruleset, RUN)
    due = _metered_run(dynamodb, ruleset, RUN + timedelta(days=1))
    rerun = _metered_run(dynamodb, ruleset, RUN + timedelta(days=1, hours=1))
    peak, swept, sweep_read_units = _sweep_unit(dynamodb, ruleset, rule, RUN + timedelta(days=1, hours=2))
    part_units, most_rows, most_rollups = _backfill_part(
        dynamodb, ruleset, rule, results, source, RUN + timedelta(days=1, hours=3)
    )
    return ScaleRow(
        users=size,
        partitions=ROLLUP_BUCKETS,
        due_users=due_users,
        idle_rollups_read=idle.rollups_read,
        idle_items_read=idle.items_read,
        due_rollups_read=due.rollups_read,
        due_items_read=due.items_read,
        due_read_units=due.read_units,
        due_write_units=due.write_units,
        due_not_ready=due.not_ready,
        idle_rerun_rollups_read=rerun.rollups_read,
        idle_rerun_items_read=rerun.items_read,
        units=due.units,
        most_unit_rollups=max(idle.most_unit_rollups, due.most_unit_rollups, rerun.most_unit_rollups),
        unit_bound=DEFAULT_UNIT_ROLLUPS,
        sweep_unit_rollups=swept,
        sweep_unit_read_units=sweep_read_units,
        sweep_unit_peak_kib=peak // 1024,
        backfill_in_lambda_bytes=events * BACKFILL_BYTES_PER_EVENT,
        backfill_athena_result_bytes=size * BACKFILL_BYTES_PER_ROW,
        backfill_part_units=part_units,
        backfill_unit_most_rows=most_rows,
        backfill_unit_most_rollups=most_rollups,
    )


@dataclass(frozen=True)
class RealtimeShare:
    rollup_writes: int
    write_units: int
    due_index_write_units: int

    def figures(self) -> dict[str, Any]:
        return asdict(self)


def realtime_share() -> RealtimeShare:
    """The aggregator's time-series path with the rolling rule: its write units, and the due index's."""
    rule = rolling_rule()
    ruleset = scale_ruleset(rule)
    draw = random.Random(7)
    dynamodb = StandInDynamoDB()
    path = TimeSeriesPath(
        None,
        RollupStore(dynamodb, TIMESERIES_TABLE),  # type: ignore[arg-type]
        [],
        zone=UTC_ZONE,
        retention_days=400,
        settings=CommitSettings(lane_retention_seconds=7 * 86_400, cache=StateCache(50_000)),
    )
    sequence = 0
    for day in range(REALTIME_DAYS):
        moment = RUN - timedelta(days=REALTIME_DAYS - day)
        for _ in range(BATCHES_PER_DAY):
            records = []
            for user in draw.sample(range(REALTIME_USERS), 100):
                sequence += 1
                event = Event(
                    user_id=f"user-{user:04d}",
                    event_type=EVENT_NAME,
                    timestamp=moment,
                    attributes={},
                    metrics={},
                    endpoint_id=f"ep-{user:04d}",
                )
                records.append(InboundRecord(Position("shardId-000000000000", sequence), event))
            path.process(records, ruleset, moment)
            moment += timedelta(minutes=30)
    usage = dynamodb.usage
    return RealtimeShare(usage.items_written, usage.write_units, usage.due_index_write_units)


def extrapolate(rows: list[ScaleRow]) -> list[dict[str, Any]]:
    """10 million users, from the largest measured size's ratios (due share, read and write units per
    rollup), on ``EXTRAPOLATED_PARTITIONS`` partitions and the default bound. A run is one plan and
    one finish invocation around its units (one invocation each, a Step Functions Map)."""
    largest = rows[-1]
    users = EXTRAPOLATED_USERS
    partitions = EXTRAPOLATED_PARTITIONS
    bound = DEFAULT_UNIT_ROLLUPS
    per_partition = -(-users // partitions)
    due = round(users * largest.due_users / largest.users)
    due_per_partition = -(-due // partitions)
    read_per_due = largest.due_read_units / max(largest.due_rollups_read, 1)
    write_per_due = largest.due_write_units / max(largest.due_rollups_read, 1)
    read_per_swept = largest.sweep_unit_read_units / max(largest.sweep_unit_rollups, 1)

    def run(name: str, rollups: int, chain: int, read_units: float, write_units: float) -> dict[str, Any]:
        units = partitions * chain
        round_trips = units * 2 + rollups / 100 + write_units
        seconds = round_trips * UNIT_ROUND_TRIP_MS / 1000 + rollups / 1000
        usd = Decimal(str(seconds)) * Decimal(UNIT_MEMORY_MB) / 1024 * PRICES["lambda_gb_second"].usd
        usd += Decimal(units + 2) * PRICES["lambda_request"].usd / 1_000_000
        usd += Decimal(str(read_units)) * PRICES["dynamodb_read"].usd / 1_000_000
        usd += Decimal(str(write_units)) * PRICES["dynamodb_write"].usd / 1_000_000
        usd += Decimal(units * 3 + 4) * STEP_FUNCTIONS_TRANSITION_USD
        return {
            "run": name,
            "rollups_read": rollups,
            "units": units,
            "invocations": units + 2,
            "most_unit_rollups": min(bound, -(-rollups // partitions)),
            "usd": round(float(usd), 2),
        }

    return [
        run("idle rerun", 0, 1, partitions * 0.5, 0),
        run(
            "daily run, windows sliding",
            due,
            -(-due_per_partition // bound),
            due * read_per_due,
            due * write_per_due,
        ),
        run(
            "sweep after a rule change (every due moment rewritten)",
            users,
            -(-per_partition // bound),
            users * read_per_swept,
            users * write_per_due,
        ),
    ]


def backfill_extrapolation() -> dict[str, Any]:
    """1 billion archived events of 10 million users: what each backfill path must read."""
    objects = EXTRAPOLATED_EVENTS // 100
    scanned = EXTRAPOLATED_EVENTS * BACKFILL_BYTES_PER_EVENT
    return {
        "events": EXTRAPOLATED_EVENTS,
        "archive_objects": objects,
        "in_lambda_bytes_into_the_evaluator": scanned,
        "athena_bytes_scanned": scanned,
        "athena_result_bytes_into_the_evaluator": EXTRAPOLATED_USERS * BACKFILL_BYTES_PER_ROW,
        "athena_usd": round(scanned / 10**12 * 5 + objects / 1000 * 0.0004, 2),
        "in_lambda_usd_gets": round(objects / 1000 * 0.0004, 2),
    }


def run_evaluator_scale(sizes: tuple[int, ...] = SIZES) -> dict[str, Any]:
    rows = [measure(size) for size in sizes]
    return {
        "sizes": [row.figures() for row in rows],
        "realtime": realtime_share().figures(),
        "extrapolation": extrapolate(rows),
        "backfill_extrapolation": backfill_extrapolation(),
    }


def scale_keys(scale: dict[str, Any]) -> dict[str, float]:
    """The worst size's figure for each of issue #12's targets."""
    rows = scale["sizes"]
    return {
        "evaluator.idle_rerun_items_read": max(r["idle_rerun_items_read"] for r in rows),
        "evaluator.due_run_rollups_over_due_users": max(r["due_rollups_read"] - r["due_users"] for r in rows),
        "evaluator.most_rollups_one_unit_read": max(
            max(r["most_unit_rollups"], r["sweep_unit_rollups"], r["backfill_unit_most_rollups"])
            for r in rows
        ),
        "evaluator.backfill_most_result_rows_one_unit_read": max(r["backfill_unit_most_rows"] for r in rows),
        "evaluator.due_index_share_of_realtime_write_units": scale["realtime"]["due_index_write_units"]
        / scale["realtime"]["write_units"],
    }
