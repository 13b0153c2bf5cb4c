"""Every file in events/ drives its handler, as ``sam local invoke -e events/<file>`` would.

Each test deploys template.yaml on moto in-process, runs the handler with the environment the
template gives it, invokes it with the sample file unchanged, and checks what a user would see.
A file added to events/ without a scenario here fails ``test_every_sample_event_has_a_test``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import boto3
import pytest

from pia.rules.ruleset import RulesetTable
from pia_cli.emulator import embedded_emulator
from pia_cli.lambda_events import StreamRecord, kinesis_event, record_data
from pia_cli.local_lambda import LocalFunction
from pia_cli.local_stack import LOCAL_EVENT_BUS, LOCAL_PINPOINT_APP, LocalStack
from pia_cli.rule_template import write_template

EVENTS = Path(__file__).resolve().parents[2] / "events"
HEADER = (
    "RuleType,EventName,AttributeName,AttributeValue,Operator-C,Target-C,Operator-V,Target-V,"
    "ResetWhenReachTarget,StartDate,FinishDate,MetricName"
)
CLOCK = datetime(2026, 4, 15, 12, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(CLOCK)


@pytest.fixture
def deploy(clock: Clock) -> Iterator[Callable[[str], LocalStack]]:
    stacks: list[LocalStack] = []
    with embedded_emulator():

        def make(targets: str = "pinpoint") -> LocalStack:
            parameters = {"PinpointApplicationId": LOCAL_PINPOINT_APP, "ActionTargets": targets}
            if "eventbridge" in targets:
                parameters["EventBusName"] = LOCAL_EVENT_BUS
            stack = LocalStack.deploy("pia-samples", parameters, clock=clock, log_level="WARNING")
            stacks.append(stack.__enter__())
            if "eventbridge" in targets:
                stack.capture_eventbridge()
            return stack

        yield make
        for stack in stacks:
            stack.__exit__(None, None, None)


def sample(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return document


def publish(stack: LocalStack, tmp_path: Path, *rows: str) -> None:
    path = tmp_path / "rules.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    outcome = stack.publish_rules(path)
    assert outcome["status"] == "published" and outcome["errors"] == 0


def decoded(event: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(base64.b64decode(r["kinesis"]["data"])) for r in event["Records"]]


def kinesis_batch(deploy: Callable[[str], LocalStack], tmp_path: Path, clock: Clock) -> None:
    stack = deploy("pinpoint")
    publish(stack, tmp_path, "aggregator,greenbutton,na,na,greater,5,na,999,no,9999-99-99,9999-99-99,na")
    event = sample("kinesis-batch.json")
    clicks: dict[str, int] = {}
    for document in decoded(event):
        user = document.get("endpoint", {}).get("User", {}).get("UserId")
        if document["event_type"] == "greenbutton" and user:
            clicks[user] = clicks.get(user, 0) + 1

    response = stack.function("aggregator").invoke(event)

    assert response == {"batchItemFailures": []}
    ready = {user for user, n in clicks.items() if n > 5}
    assert ready, "the sample should take someone over the line"
    assert {
        u for u, a in stack.targets_view().attributes.items() if a.get("trk_greenbutton") == "ready"
    } == ready


def kinesis_generic_batch(deploy: Callable[[str], LocalStack], tmp_path: Path, clock: Clock) -> None:
    stack = deploy("eventbridge")
    publish(
        stack,
        tmp_path,
        "aggregator,purchase,category,books,na,999,greater,20,no,9999-99-99,9999-99-99,amount",
    )

    response = stack.function("aggregator").invoke(sample("kinesis-generic-batch.json"))

    # user-1001 bought books for 19.99 and 5.01: 25.00 > 20. user-1004's purchase is music.
    assert response == {"batchItemFailures": []}
    assert stack.targets_view().attributes == {"user-1001": {"trk_purchase_books": "ready"}}


def kinesis_segment_batch(deploy: Callable[[str], LocalStack], tmp_path: Path, clock: Clock) -> None:
    stack = deploy("eventbridge")
    publish(
        stack,
        tmp_path,
        "aggregator,purchase,category,books,na,999,greater,20,no,9999-99-99,9999-99-99,amount",
    )

    response = stack.function("aggregator").invoke(sample("kinesis-segment-batch.json"))

    # user-1001's Segment (19.99) and RudderStack (5.01) book purchases: 25.00 > 20. The identify
    # call and the anonymous purchase are skipped; user-1004's purchase is music.
    assert response == {"batchItemFailures": []}
    assert stack.targets_view().attributes == {"user-1001": {"trk_purchase_books": "ready"}}


def poller_schedule(deploy: Callable[[str], LocalStack], tmp_path: Path, clock: Clock) -> None:
    stack = deploy("pinpoint")
    rules = tmp_path / "rules.csv"
    rules.write_text(HEADER + "\naggregator,greenbutton,na,na,greater,5,na,999,no,9999-99-99,9999-99-99,na\n")
    stack.upload_rules(rules)

    outcome = stack.function("rule_poller").invoke(sample("poller-schedule.json"))

    assert (outcome["status"], outcome["version"], outcome["rules"]) == ("published", 1, 1)
    assert stack.rules_report(rules) is not None


def s3_rules_upload(deploy: Callable[[str], LocalStack], tmp_path: Path, clock: Clock) -> None:
    """The sample names its own bucket and key; like ``sam local invoke --env-vars``, the poller is
    pointed at that bucket, and the marketer's starting file (``pia rules template``) is put there."""
    stack = deploy("pinpoint")
    event = sample("s3-rules-upload.json")
    s3_info = event["Records"][0]["s3"]
    bucket, key = s3_info["bucket"]["name"], unquote_plus(s3_info["object"]["key"])
    workbook = tmp_path / "rules.xlsx"
    write_template(workbook)
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=key, Body=workbook.read_bytes())
    deployed = stack.deployment.function("rule_poller")
    poller = LocalFunction(
        "rule_poller",
        environment={**deployed.environment, "RULES_BUCKET": bucket},
        name=deployed.name,
        overrides=stack.overrides,
        clock=clock,
        log_level="WARNING",
    )

    with poller:
        outcome = poller.invoke(event)

    assert (outcome["status"], outcome["version"], outcome["rules"], outcome["errors"]) == (
        "published",
        1,
        4,
        0,
    )
    table = RulesetTable(
        boto3.client("dynamodb", region_name="us-east-1"), deployed.environment["RULESET_TABLE"]
    )
    assert {r.output_name for r in table.current().rules} == {
        "trk_greenbutton",
        "trk_course_completed",
        "trk_date_purchase",
        "trk_ltv",
    }


def relay_schedule(deploy: Callable[[str], LocalStack], tmp_path: Path, clock: Clock) -> None:
    """Pinpoint refuses the action at first; the relay's scheduled run delivers it later."""
    stack = deploy("pinpoint")
    publish(stack, tmp_path, "aggregator,greenbutton,na,na,greater,5,na,999,no,9999-99-99,9999-99-99,na")
    stack.pinpoint.fail_next = 100
    response = stack.function("aggregator").invoke(sample("kinesis-batch.json"))
    assert response == {"batchItemFailures": []}
    assert stack.pinpoint.user_attributes == {}
    stack.pinpoint.fail_next = 0
    clock.now = CLOCK + timedelta(minutes=10)

    outcome = stack.function("action_relay").invoke(sample("relay-schedule.json"))

    assert outcome["delivered"] == 1 and outcome["failed"] == 0
    assert stack.pinpoint.user_attributes == {"user-0001": {"trk_greenbutton": "ready"}}


def evaluator_schedule(deploy: Callable[[str], LocalStack], tmp_path: Path, clock: Clock) -> None:
    """A date rule over purchases already counted: the scheduled run marks the user who meets it."""
    stack = deploy("pinpoint")
    publish(stack, tmp_path, "date,purchase,na,na,na,999,greater,100,no,2026-04-01,2026-04-30,price")
    bought = [
        {
            "event_type": "purchase",
            "event_timestamp": int(datetime(2026, 4, d, 9, tzinfo=UTC).timestamp() * 1000),
            "client": {"client_id": "ep-7"},
            "metrics": {"price": price},
            "endpoint": {"Id": "ep-7", "User": {"UserId": "user-7"}},
        }
        for d, price in ((3, 60.0), (9, 45.5))
    ]
    batch = kinesis_event([StreamRecord(record_data(doc), str(n + 1)) for n, doc in enumerate(bought)])
    assert stack.function("aggregator").invoke(batch) == {"batchItemFailures": []}

    summary = stack.function("evaluator").invoke(sample("evaluator-schedule.json"))

    assert summary["failures"] == 0
    assert stack.targets_view().attributes == {"user-7": {"trk_date_purchase": "ready"}}


SCENARIOS: dict[str, Callable[[Callable[[str], LocalStack], Path, Clock], None]] = {
    "kinesis-batch.json": kinesis_batch,
    "kinesis-generic-batch.json": kinesis_generic_batch,
    "kinesis-segment-batch.json": kinesis_segment_batch,
    "poller-schedule.json": poller_schedule,
    "s3-rules-upload.json": s3_rules_upload,
    "relay-schedule.json": relay_schedule,
    "evaluator-schedule.json": evaluator_schedule,
}


def test_every_sample_event_has_a_test() -> None:
    files = {path.name for path in EVENTS.glob("*.json")}
    assert files, "events/ holds the sample events"
    assert sorted(files - set(SCENARIOS)) == []


@pytest.mark.parametrize("name", sorted(p.name for p in EVENTS.glob("*.json")))
def test_sample_event_drives_its_handler(
    name: str, deploy: Callable[[str], LocalStack], tmp_path: Path, clock: Clock
) -> None:
    if name not in SCENARIOS:
        pytest.fail(f"events/{name} has no scenario in {Path(__file__).name}")
    SCENARIOS[name](deploy, tmp_path, clock)
