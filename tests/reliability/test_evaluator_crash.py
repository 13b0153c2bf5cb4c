"""Scenario 10: the scheduled evaluator is killed halfway, then runs again (the next hour)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import boto3
import pytest

from pia.rules.model import Rule
from pia.rules.ruleset import Ruleset, RulesetTable
from pia.rules.table import parse_rules
from pia.timeseries.rollups import DayTotal, SeriesRollup, kept_wake, next_change
from pia.timeseries.store import RollupStore, rollup_item
from pia_cli.local_stack import EVALUATOR_STATE_MACHINE, TEMPLATE
from pia_cli.state_machine import StateMachine, StatesError, load_definition
from tests.reliability.deployment import Deployment
from tests.reliability.faults import ProcessKilled, Triple
from tests.reliability.ledger import ReliabilityLedger

pytestmark = [pytest.mark.reliability, pytest.mark.filterwarnings("ignore:No application metrics")]
ACTIVATION = "2026-02-01"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:pia-reliability-evaluator"
MACHINE_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:pia-reliability-evaluator"
FIRST = datetime(2026, 3, 20, 12, tzinfo=UTC)
ROWS = (
    {
        "RuleType": "date",
        "EventName": "purchase",
        "AttributeName": "na",
        "AttributeValue": "na",
        "Operator-C": "greater_or_equal",
        "Target-C": "3",
        "Operator-V": "na",
        "Target-V": "999",
        "ResetWhenReachTarget": "no",
        "StartDate": "9999-99-99",
        "FinishDate": "9999-99-99",
        "Window": "last 7 days",
        "OutputName": "trk_week_buyer",
    },
    {
        "RuleType": "date",
        "EventName": "purchase",
        "AttributeName": "na",
        "AttributeValue": "na",
        "Operator-C": "greater",
        "Target-C": "4",
        "Operator-V": "greater_or_equal",
        "Target-V": "10",
        "ResetWhenReachTarget": "no",
        "StartDate": "2026-03-01",
        "FinishDate": "2026-03-31",
        "OutputName": "trk_march_buyer",
    },
)
Days = dict[date, tuple[int, Decimal]]


def _met(output: str, days: Days, today: date) -> bool:
    """The two rules above, from the table's words."""
    if output == "trk_week_buyer":
        first, last = today - timedelta(days=6), today
    else:
        first, last = date(2026, 3, 1), date(2026, 3, 31)
    inside = [v for d, v in days.items() if first <= d <= last]
    count, total = sum(c for c, _ in inside), sum((t for _, t in inside), Decimal(0))
    if output == "trk_week_buyer":
        return count >= 3
    return count > 4 and total >= 10


def _expected_changes(history: dict[str, Days], before: date | None, today: date) -> Counter[Triple]:
    """Only changes: ready when a rule starts to hold, not-ready when it stops."""
    changes: Counter[Triple] = Counter()
    for user, days in history.items():
        for output in ("trk_week_buyer", "trk_march_buyer"):
            now = _met(output, days, today)
            was = before is not None and _met(output, {d: v for d, v in days.items() if d <= before}, before)
            if now != was:
                changes[(user, output, "ready" if now else "not-ready")] += 1
    return changes


class Evaluations:
    """The evaluator handler on the deployment: one container until it is killed, an hourly clock."""

    def __init__(self, stack: Deployment, module: Any) -> None:
        self.stack = stack
        self.module = module
        self.container: Any = None

    def run(self, at: datetime) -> dict[str, Any] | None:
        with (
            self.stack._env(),
            self.module.container.wired(self.stack.wiring("evaluator", lambda: at)) as container,
        ):
            if self.container is None:
                self.container = container.build()
            with container.running(self.container):
                try:
                    summary: dict[str, Any] = self.module.lambda_handler({}, self.stack.context)
                except ProcessKilled:
                    self.container = None
                    return None
        return summary


def _seed(
    stack: Deployment, rules: tuple[Rule, ...], history: dict[str, Days], users: list[str], now: datetime
) -> None:
    """Rollups as the aggregator leaves them, one per series (a count series, and one that sums the
    event's only metric), with the due moment it keeps. Read-modify-write, keeping what the evaluator
    recorded as sent: the test is the only writer."""
    store = RollupStore(stack.dynamodb, stack.timeseries)
    requests: list[Any] = []
    for series in sorted({rule.series for rule in rules}):
        own = tuple(rule for rule in rules if rule.series == series)
        stored = {r.user_id: r for r in store.series_rollups(series)}
        for user in users:
            current = stored.get(user) or SeriesRollup(
                series, user, activation=ACTIVATION, backfill_activation=ACTIVATION, endpoints=(f"ep-{user}",)
            )
            days = {d: DayTotal(c, t) for d, (c, t) in history[user].items()}
            state = replace(current, version=current.version + 1, days=days)
            change = next_change(state, own, now.date())
            state = replace(state, wake=kept_wake(current.wake, change, ZoneInfo("UTC")))
            requests.append({"PutRequest": {"Item": rollup_item(state, int(now.timestamp()), 400)}})
    for start in range(0, len(requests), 25):
        stack.dynamodb.batch_write_item(RequestItems={stack.timeseries: requests[start : start + 25]})


def _grow(rng: random.Random, history: dict[str, Days], users: list[str], first: date, last: date) -> None:
    for user in users:
        for _ in range(rng.randint(1, 6)):
            day = first + timedelta(days=rng.randint(0, (last - first).days))
            count, total = history[user].get(day, (0, Decimal(0)))
            history[user][day] = (
                count + rng.randint(1, 2),
                total + Decimal(rng.choice(("0.5", "2", "3.75"))),
            )


def _publish(stack: Deployment, rules: Sequence[Rule]) -> None:
    series = {rule.series for rule in rules}
    RulesetTable(stack.dynamodb, stack.rulesets).publish(
        Ruleset(1, rules, "2026-01-15T00:00:00+00:00", series_activation=dict.fromkeys(series, ACTIVATION)),
        expected_version=0,
    )


def _days_pass(
    rng: random.Random, stack: Deployment, rules: Sequence[Rule], history: dict[str, Days], users: list[str]
) -> datetime:
    """Days pass, a third of the users and a few newcomers buy again (``users`` grows): the new clock."""
    later = FIRST + timedelta(days=rng.randint(1, 8))
    newcomers = [f"user-{i:03d}" for i in range(len(users), len(users) + rng.randint(0, 6))]
    history.update({user: {} for user in newcomers})
    active = rng.sample(users, k=len(users) // 3) + newcomers
    users += newcomers
    _grow(rng, history, active, FIRST.date() + timedelta(days=1), later.date())
    _seed(stack, rules, history, active, later)
    return later


def _compare(stack: Deployment, expected: Counter[Triple], differences: list[str]) -> int:
    """What Pinpoint got against the hand-computed changes; the resends in the documented window."""
    sent = stack.attribute_sends.sent
    resends = 0
    for triple in sorted(set(sent) | set(expected)):
        got, want = sent[triple], expected[triple]
        if want and want < got <= want + stack.crash.attribute_window[triple]:
            resends += got - want
        elif got != want:
            differences.append(f"{triple}: sent {got} times, expected {want}")
    pending = stack.outbox()
    if pending:
        differences.append(f"{len(pending)} outbox entries never delivered")
    return resends


def test_evaluator_killed_halfway_then_rerun_sends_each_change_once_and_misses_no_user(
    deploy: Callable[..., Deployment],
    ledger: ReliabilityLedger,
    examples: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    row = ledger.scenario(
        10,
        "Evaluator crash",
        "Runs: a quarter of PIA_RELIABILITY_EXAMPLES (each is two evaluations, each killed up to five "
        "times, about ten evaluator runs). Rollups for 6-30 users are seeded, with a 7-day rolling rule and a fixed March rule; the hourly "
        "evaluator is killed after k of its writes (conditional Puts of rollups with what they owe, "
        "Pinpoint calls, clears and claims; k random) up to five "
        "times in a row, each kill followed by the next hourly run in a new container. Then days pass, "
        "users buy again, some windows roll off, and it happens again. Checked against the two rules "
        "computed by hand: each ready / not-ready change reaches Pinpoint exactly once (a same-value "
        "resend only when a kill landed between Pinpoint accepting and the clear), no user is "
        "missed, a further run sends nothing, and no rollup still owes an action.",
    )
    from evaluator import app as evaluator_module

    for run in range(max(3, examples // 4)):
        rng = random.Random(f"evaluator-{run}")
        with deploy(rng, TIMEZONE="UTC", RAW_EVENTS_BUCKET="") as stack:
            parsed = parse_rules(enumerate(ROWS, start=2))
            assert not parsed.errors, parsed.errors
            _publish(stack, parsed.rules)
            evaluations = Evaluations(stack, evaluator_module)
            users = [f"user-{i:03d}" for i in range(rng.randint(6, 30))]
            history: dict[str, Days] = {user: {} for user in users}
            _grow(rng, history, users, date(2026, 3, 1), FIRST.date())
            _seed(stack, parsed.rules, history, users, FIRST)
            differences: list[str] = []
            expected: Counter[Triple] = _expected_changes(history, None, FIRST.date())
            clock = FIRST
            for phase in (1, 2):
                if phase == 2:
                    clock = _days_pass(rng, stack, parsed.rules, history, users)
                    expected += _expected_changes(history, FIRST.date(), clock.date())
                for attempt in range(6):
                    killed = attempt < 5 and rng.random() < (0.8 if attempt == 0 else 0.5)
                    stack.crash.arm(rng.randint(0, 10) if killed else None)
                    finished = evaluations.run(clock)
                    stack.crash.arm(None)
                    clock += timedelta(hours=1)
                    if finished is not None and not killed:
                        break
                if evaluations.run(clock) is None:
                    differences.append(f"phase {phase}: the run after recovery failed")
                clock += timedelta(hours=1)
            resends = _compare(stack, expected, differences)
            row.record(faults=stack.crash.crashes, differences=differences, resends=resends)
    assert row.differences == 0, row.verdict()


class FannedOut:
    """The evaluator on its state machine, interpreted from template.yaml: every Lambda task runs the
    handler in a container that a kill throws away (Step Functions sees ``Runtime.ExitError`` and
    retries as declared), and a unit's response is sometimes lost after it ran, so Step Functions runs
    that unit twice."""

    def __init__(self, stack: Deployment, module: Any, rng: random.Random) -> None:
        self.stack = stack
        self.module = module
        self.rng = rng
        self.container: Any = None
        self.clock = FIRST
        self.kills_left = 0
        self.twice = 0
        self.s3 = boto3.client("s3", region_name="us-east-1")
        definition = load_definition(TEMPLATE, EVALUATOR_STATE_MACHINE, lambda value: FUNCTION_ARN)
        self.machine = StateMachine(definition, arn=MACHINE_ARN, invoke=self.invoke, s3=self.s3)

    def invoke(self, function: str, payload: Any) -> Any:
        if self.kills_left and self.stack.crash.at is None and self.rng.random() < 0.3:
            self.kills_left -= 1
            self.stack.crash.arm(self.rng.randint(0, 4))
        with (
            self.stack._env(),
            self.module.container.wired(self.stack.wiring("evaluator", lambda: self.clock)) as container,
        ):
            if self.container is None:
                self.container = container.build()
            with container.running(self.container):
                try:
                    result = self.module.lambda_handler(payload, self.stack.context)
                except ProcessKilled as killed:
                    self.container = None
                    raise StatesError("Runtime.ExitError", str(killed)) from None
        if payload.get("mode") == "unit" and self.rng.random() < 0.2:
            self.twice += 1
            raise StatesError("Lambda.SdkClientException", "the unit ran; its response was lost")
        return result

    def run(self, at: datetime, kills: int) -> str:
        """One scheduled execution; its status."""
        self.clock, self.kills_left = at, kills
        self.stack.crash.arm(None)
        outcome = self.machine.start(f"{at:%Y%m%dT%H%M%S}-{self.rng.randrange(10**6):06d}", {}, at)
        self.stack.crash.arm(None)
        return outcome.status


def test_evaluator_fanned_out_over_units_killed_mid_unit_and_units_run_twice_sends_each_change_once(
    deploy: Callable[..., Deployment],
    ledger: ReliabilityLedger,
    examples: int,
) -> None:
    row = ledger.scenario(
        16,
        "Evaluator crash across units",
        "Runs: a quarter of PIA_RELIABILITY_EXAMPLES. The same rollups, rules and hand-computed "
        "expectations as scenario 10, evaluated by the evaluator's state machine from template.yaml "
        "(interpreted locally: plan, a Distributed Map over the units with follow-ups, finish), with units "
        "of 1-3 rollups over the series' partitions, so each run has several units and most have "
        "follow-ups. Up to three kills per execution, each after k of the writes of whichever invocation "
        "is running (plan, a unit page or finish; Step Functions retries it as the template declares, in a "
        "new container), and one unit response in five lost after the unit ran, so that unit runs twice. "
        "An execution that still fails is followed by the next hourly one. Checked: each ready / not-ready "
        "change reaches Pinpoint exactly once (a same-value resend only in the documented window), no user "
        "is missed, a further run sends nothing, and no rollup still owes an action.",
    )
    from evaluator import app as evaluator_module

    s3 = boto3.client("s3", region_name="us-east-1")
    for run in range(max(3, examples // 4)):
        rng = random.Random(f"evaluator-units-{run}")
        bucket = f"rel-evaluator-runs-{run}"
        s3.create_bucket(Bucket=bucket)
        limit = str(rng.randint(1, 3))
        with deploy(
            rng,
            TIMEZONE="UTC",
            RAW_EVENTS_BUCKET="",
            BACKFILL_RESULTS_BUCKET=bucket,
            EVALUATOR_UNIT_ROLLUPS=limit,
        ) as stack:
            parsed = parse_rules(enumerate(ROWS, start=2))
            _publish(stack, parsed.rules)
            fanned = FannedOut(stack, evaluator_module, rng)
            users = [f"user-{i:03d}" for i in range(rng.randint(6, 30))]
            history: dict[str, Days] = {user: {} for user in users}
            _grow(rng, history, users, date(2026, 3, 1), FIRST.date())
            _seed(stack, parsed.rules, history, users, FIRST)
            differences: list[str] = []
            expected: Counter[Triple] = _expected_changes(history, None, FIRST.date())
            clock = FIRST
            for phase in (1, 2):
                if phase == 2:
                    clock = _days_pass(rng, stack, parsed.rules, history, users)
                    expected += _expected_changes(history, FIRST.date(), clock.date())
                for attempt in range(6):
                    kills = rng.randint(1, 3) if attempt < 5 and rng.random() < 0.8 else 0
                    crashes = stack.crash.crashes
                    status = fanned.run(clock, kills)
                    clock += timedelta(hours=1)
                    if status == "SUCCEEDED" and stack.crash.crashes == crashes:
                        break
                if fanned.run(clock, 0) != "SUCCEEDED":
                    differences.append(f"phase {phase}: the run after recovery failed")
                clock += timedelta(hours=1)
            if fanned.machine.stats.map_items < 2 * 4:
                differences.append(
                    f"only {fanned.machine.stats.map_items} units ran: the scenario fans out too little"
                )
            resends = _compare(stack, expected, differences)
            row.record(faults=stack.crash.crashes + fanned.twice, differences=differences, resends=resends)
    assert row.differences == 0, row.verdict()
