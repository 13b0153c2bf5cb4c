"""The evaluator's figures: a 30-day date rule over 50 users x 30 days x 20 events, evaluated twice.

The rule (count greater 500 over 2026-10-01..2026-10-30) is published on its tenth day, so its
series goes live from day 11: the first ten days exist only in the raw event archive, the last
twenty are counted by the aggregator's real-time path as they stream. Every user has 600 events in
the window, 400 of them live, so only the evaluator, which backfills the first ten days, can see
that each user meets the rule. The 30,000 events go through the real aggregator handler (batches of
100, its clock at each batch's time), then the real evaluator handler runs the morning after the
window, and again an hour later. Its Pinpoint calls are answered by the recorder.

- ``evaluator.items_read``: DynamoDB items read by an evaluation (the larger of the two runs:
  rollups, coverage, ruleset, cursors);
- ``evaluator.events_in_window``: events the rollups hold for the window after it (all 30,000);
- ``evaluator.output_calls_on_rerun``: calls to the action target in the second evaluation.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from bench.metering import Usage
from bench.moto_support import REGION
from bench.scenario import RULE_ROW, endpoint_id, pinpoint_record
from bench.world import TIMESERIES_TABLE, World, aws_world, function_environment
from pia.rules.ruleset import Ruleset
from pia.rules.table import parse_rules
from pia.timeseries.store import RollupStore
from pia_cli.lambda_events import StreamRecord, kinesis_event, schedule_event, sequence
from pia_cli.local_lambda import LocalFunction, handler_module
from pia_cli.recorder import PinpointRecorder

USERS = 50
DAYS = 30
EVENTS_PER_DAY = 20
THRESHOLD = 500
FIRST_DAY = date(2026, 10, 1)
LAST_DAY = FIRST_DAY + timedelta(days=DAYS - 1)
PUBLISHED = datetime(2026, 10, 10, 12, 0, tzinfo=UTC)
FIRST_RUN = datetime(LAST_DAY.year, LAST_DAY.month, LAST_DAY.day, tzinfo=UTC) + timedelta(days=1, hours=1)
RERUN = FIRST_RUN + timedelta(hours=1)
OUTPUT_NAME = "trk_date_greenbutton"
SCHEDULE_RULE = "arn:aws:events:us-east-1:123456789012:rule/pia-evaluator"


class EvaluatorUnavailable(RuntimeError):
    """src/evaluator is not implemented yet in this checkout."""


@dataclass(frozen=True)
class EvaluatorRun:
    items_read: int
    events_in_window: int
    output_calls_on_rerun: int
    first: Usage
    rerun: Usage
    summaries: tuple[dict[str, Any], dict[str, Any]]
    ready_users: int

    def figures(self) -> dict[str, float]:
        return {
            "evaluator.items_read": self.items_read,
            "evaluator.events_in_window": self.events_in_window,
            "evaluator.output_calls_on_rerun": self.output_calls_on_rerun,
        }

    def details(self) -> dict[str, Any]:
        return {
            "available": 1,
            "users": USERS,
            "days": DAYS,
            "events_per_day": EVENTS_PER_DAY,
            "first_run": {**self.first.to_json(), "summary": self.summaries[0]},
            "rerun": {**self.rerun.to_json(), "summary": self.summaries[1]},
            "users_marked_ready": self.ready_users,
        }


def date_ruleset() -> Ruleset:
    row = {
        **RULE_ROW,
        "RuleType": "date",
        "Target-C": str(THRESHOLD),
        "StartDate": FIRST_DAY.isoformat(),
        "FinishDate": LAST_DAY.isoformat(),
    }
    parsed = parse_rules([(2, row)])
    if parsed.errors:
        raise ValueError(f"bench date rule does not parse: {parsed.errors}")
    return Ruleset(version=1, rules=parsed.rules, published_at=PUBLISHED.isoformat(), source="bench")


def stream() -> list[tuple[datetime, StreamRecord]]:
    """Every user's events of each day, 72 minutes apart, in time order."""
    moments: list[tuple[datetime, int]] = []
    for day in range(DAYS):
        start = datetime(FIRST_DAY.year, FIRST_DAY.month, FIRST_DAY.day, tzinfo=UTC) + timedelta(days=day)
        for n in range(EVENTS_PER_DAY):
            for user in range(USERS):
                moments.append((start + timedelta(minutes=72 * n, seconds=user), user))
    moments.sort()
    return [
        (
            moment,
            StreamRecord(
                pinpoint_record(user, int(moment.timestamp() * 1000)), sequence(i + 1), endpoint_id(user)
            ),
        )
        for i, (moment, user) in enumerate(moments)
    ]


def scheduled_event(moment: datetime) -> dict[str, Any]:
    return schedule_event(SCHEDULE_RULE, moment.strftime("%Y-%m-%dT%H:%M:%SZ"), region=REGION)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _check_available() -> None:
    try:
        module = handler_module("evaluator")
    except Exception as exc:
        raise EvaluatorUnavailable(
            f"src/evaluator/app.py does not import: {type(exc).__name__}: {exc}"
        ) from exc
    if not hasattr(module, "container"):
        raise EvaluatorUnavailable("src/evaluator/app.py has no container yet")


def run_evaluator() -> EvaluatorRun:
    _check_available()
    with aws_world(date_ruleset()) as world:
        return _run(world)


def _run(world: World) -> EvaluatorRun:
    recorder = PinpointRecorder()
    clock = Clock(PUBLISHED)
    logs = io.StringIO()
    overrides = {"pinpoint": lambda _region: recorder.client()}
    environment = function_environment()
    records = stream()
    with LocalFunction(
        "aggregator", environment=environment, overrides=overrides, clock=clock, log_stream=logs
    ) as aggregator:
        for start in range(0, len(records), 100):
            chunk = records[start : start + 100]
            clock.now = chunk[-1][0] + timedelta(seconds=5)
            response = aggregator.invoke(kinesis_event([record for _, record in chunk]))
            if response.get("batchItemFailures"):
                raise RuntimeError(
                    f"aggregator failed records while loading the evaluator scenario: {response}"
                )
    with LocalFunction(
        "evaluator", environment=environment, overrides=overrides, clock=clock, log_stream=logs
    ) as evaluator:
        clock.now = FIRST_RUN
        with world.meter.measure() as first:
            first_summary = evaluator.invoke(scheduled_event(FIRST_RUN))
        clock.now = RERUN
        with world.meter.measure() as rerun:
            rerun_summary = evaluator.invoke(scheduled_event(RERUN))
    ready = sum(1 for attrs in recorder.user_attributes.values() if attrs.get(OUTPUT_NAME) == "ready")
    return EvaluatorRun(
        items_read=max(first.item_reads, rerun.item_reads),
        events_in_window=_events_in_window(world),
        output_calls_on_rerun=rerun.calls_to("pinpoint"),
        first=first,
        rerun=rerun,
        summaries=(dict(first_summary), dict(rerun_summary)),
        ready_users=ready,
    )


def _events_in_window(world: World) -> int:
    """Read back (unmetered) what the rollups hold for the window: every event should be there."""
    dynamodb = world.plain_client("dynamodb")
    rule = world.ruleset.rules[0]
    store = RollupStore(dynamodb, TIMESERIES_TABLE, retention_days=400)
    return sum(r.window_total(FIRST_DAY, LAST_DAY).count for r in store.series_rollups(rule.series))
