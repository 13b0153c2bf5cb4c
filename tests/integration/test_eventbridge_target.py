"""The EventBridge target on moto: a rule on the bus forwards to SQS, and the tests read what arrived."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from pia.core.actions import NOT_READY, READY, Action, ActionKind, action_id_for
from pia.settings import TargetSettings
from pia.targets.eventbridge import MAX_ENTRIES_PER_CALL, SOURCE, EventBridgeTarget, entry_size
from pia.targets.factory import build_targets
from tests.conftest import publish_rows, rule_row

BUS = "pia-actions"
EVENTS = Path(__file__).resolve().parents[2] / "events"
OCCURRED = datetime(2026, 11, 2, 9, 15, tzinfo=UTC)


def action(
    n: int,
    kind: ActionKind = ActionKind.SET_ATTRIBUTE,
    value: str | None = READY,
    user: str | None = None,
    total: str = "25.00",
) -> Action:
    return Action(
        action_id=action_id_for("rule-1", n),
        kind=kind,
        user_id=user or f"user-{n:04d}",
        rule_id="rule-1",
        output_name="trk_purchase",
        value=value,
        endpoint_ids=(),
        count=2,
        total=Decimal(total),
        occurred_at=OCCURRED + timedelta(seconds=n),
    )


@dataclass
class Bus:
    events: Any
    sqs: Any
    queue_url: str

    def received(self) -> list[dict[str, Any]]:
        bodies: list[dict[str, Any]] = []
        while True:
            page = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
            messages = page.get("Messages", [])
            if not messages:
                return bodies
            for message in messages:
                bodies.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture
def bus(aws: None) -> Bus:
    events = boto3.client("events", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    events.create_event_bus(Name=BUS)
    queue_url = sqs.create_queue(QueueName="pia-actions-consumer")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(Name="pia-to-sqs", EventBusName=BUS, EventPattern=json.dumps({"source": [SOURCE]}))
    events.put_targets(Rule="pia-to-sqs", EventBusName=BUS, Targets=[{"Id": "consumer", "Arn": queue_arn}])
    return Bus(events, sqs, queue_url)


@dataclass
class PartialFailures:
    """Plays EventBridge answering 200 with some entries failed: the entries it fails never reach the
    bus, the others are forwarded to moto, and the answer lists both in request order."""

    forward: Any
    fail: dict[str, list[str]]
    calls: list[list[str]] = field(default_factory=list)

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
        entries = json.loads(params["body"])["Entries"]
        ids = [json.loads(e["Detail"])["action_id"] for e in entries]
        self.calls.append(ids)
        failures = {aid: self.fail[aid].pop(0) for aid in ids if self.fail.get(aid)}
        delivered = [e for e, aid in zip(entries, ids, strict=True) if aid not in failures]
        accepted = iter(self.forward.put_events(Entries=delivered)["Entries"] if delivered else [])
        results = [
            {"ErrorCode": failures[aid], "ErrorMessage": f"injected {failures[aid]}"}
            if aid in failures
            else next(accepted)
            for aid in ids
        ]
        parsed = {"FailedEntryCount": len(failures), "Entries": results}
        return AWSResponse("", 200, {}, None), {**parsed, "ResponseMetadata": {"HTTPStatusCode": 200}}


def target_with(
    hook: Callable[..., Any] | None = None, sleeps: list[float] | None = None, **options: Any
) -> EventBridgeTarget:
    client = boto3.client("events", region_name="us-east-1")
    if hook is not None:
        client.meta.events.register("before-call.events.PutEvents", hook)
    sleep = sleeps.append if sleeps is not None else (lambda _: None)
    return EventBridgeTarget(client, BUS, sleep=sleep, **options)


def entry_counts(calls: list[list[str]]) -> list[int]:
    return [len(ids) for ids in calls]


def test_each_kind_of_change_arrives_with_its_detail_type_and_exact_detail(bus: Bus) -> None:
    met = action(1, total="25.00")
    no_longer = action(2, value=NOT_READY, total="0")
    fired = action(3, kind=ActionKind.FIRE_EVENT, value=None, total="0.30000000000000000001")
    valued = action(4, value="412.50", total="412.50")

    result = target_with().send([met, no_longer, fired, valued])

    assert result.failed == {}
    arrived = {body["detail"]["action_id"]: body for body in bus.received()}
    assert set(arrived) == {met.action_id, no_longer.action_id, fired.action_id, valued.action_id}
    assert arrived[valued.action_id]["detail-type"] == "Rule Value Changed"
    assert arrived[valued.action_id]["detail"]["value"] == "412.50"
    first = arrived[met.action_id]
    assert (first["source"], first["detail-type"], first["time"], first["resources"]) == (
        "pinpoint-incremental-analytics",
        "Rule Met",
        "2026-11-02T09:15:01Z",
        [],
    )
    assert first["detail"] == {
        "action_id": met.action_id,
        "user_id": "user-0001",
        "rule_id": "rule-1",
        "output_name": "trk_purchase",
        "value": "ready",
        "count": 2,
        "sum": "25.00",
        "occurred_at": "2026-11-02T09:15:01+00:00",
    }
    assert arrived[no_longer.action_id]["detail-type"] == "Rule No Longer Met"
    assert arrived[no_longer.action_id]["detail"]["value"] == "not-ready"
    assert arrived[fired.action_id]["detail-type"] == "Reset Event Fired"
    assert arrived[fired.action_id]["detail"]["value"] is None
    assert arrived[fired.action_id]["detail"]["sum"] == "0.30000000000000000001"


def test_more_than_ten_actions_go_out_in_calls_of_at_most_ten(bus: Bus) -> None:
    actions = [action(n) for n in range(23)]
    recorder = PartialFailures(boto3.client("events", region_name="us-east-1"), fail={})

    result = target_with(recorder).send(actions)

    assert result.failed == {}
    assert entry_counts(recorder.calls) == [MAX_ENTRIES_PER_CALL, MAX_ENTRIES_PER_CALL, 3]
    assert [aid for call in recorder.calls for aid in call] == [a.action_id for a in actions]
    arrived = [body["detail"]["action_id"] for body in bus.received()]
    assert sorted(arrived) == sorted(a.action_id for a in actions)


def test_batches_also_respect_the_request_size_limit(bus: Bus) -> None:
    actions = [action(n) for n in range(6)]
    one_entry = entry_size(target_with().entry(actions[0]))
    limit = one_entry * 2 + one_entry // 2
    recorder = PartialFailures(boto3.client("events", region_name="us-east-1"), fail={})
    target = target_with(recorder, max_request_bytes=limit)

    result = target.send(actions)

    assert result.failed == {}
    assert entry_counts(recorder.calls) == [2, 2, 2]
    assert len(bus.received()) == 6


def test_an_event_bigger_than_a_whole_request_fails_alone(bus: Bus) -> None:
    small, huge = action(1), action(2, user="u" * 300)
    limit = entry_size(target_with().entry(small)) + 100

    result = target_with(max_request_bytes=limit).send([small, huge])

    assert list(result.failed) == [huge.action_id]
    assert "over PutEvents'" in result.failed[huge.action_id]
    assert [body["detail"]["action_id"] for body in bus.received()] == [small.action_id]


def test_entries_failed_inside_a_200_answer_are_retried_alone_after_a_backoff(bus: Bus) -> None:
    a, b, c = action(1), action(2), action(3)
    recorder = PartialFailures(
        boto3.client("events", region_name="us-east-1"),
        fail={b.action_id: ["ThrottlingException"], c.action_id: ["InvalidArgument"]},
    )
    sleeps: list[float] = []

    result = target_with(recorder, sleeps, base_delay=0.5).send([a, b, c])

    assert recorder.calls == [[a.action_id, b.action_id, c.action_id], [b.action_id]]
    assert len(sleeps) == 1 and 0 <= sleeps[0] <= 0.5
    assert result.failed == {c.action_id: "InvalidArgument: injected InvalidArgument"}
    arrived = [body["detail"]["action_id"] for body in bus.received()]
    assert sorted(arrived) == sorted([a.action_id, b.action_id])


def test_an_entry_that_keeps_failing_is_reported_after_the_last_attempt(bus: Bus) -> None:
    a, b = action(1), action(2)
    recorder = PartialFailures(
        boto3.client("events", region_name="us-east-1"), fail={b.action_id: ["InternalFailure"] * 5}
    )
    sleeps: list[float] = []

    result = target_with(recorder, sleeps, max_attempts=3, base_delay=0.1).send([a, b])

    assert entry_counts(recorder.calls) == [2, 1, 1]
    assert len(sleeps) == 2 and sleeps[0] <= 0.1 and sleeps[1] <= 0.2
    assert result.failed == {b.action_id: "InternalFailure: injected InternalFailure"}
    assert [body["detail"]["action_id"] for body in bus.received()] == [a.action_id]


def test_a_missing_bus_fails_every_action_with_the_service_reason(bus: Bus) -> None:
    client = boto3.client("events", region_name="us-east-1")
    actions = [action(1), action(2)]

    result = EventBridgeTarget(client, "no-such-bus").send(actions)

    assert set(result.failed) == {a.action_id for a in actions}
    assert all(reason.startswith("ResourceNotFoundException:") for reason in result.failed.values())


def test_build_targets_sends_to_the_configured_bus(bus: Bus) -> None:
    settings = TargetSettings(action_targets=("eventbridge",), event_bus_name=BUS)
    [target] = build_targets(settings, lambda service, region_name=None: boto3.client(service, "us-east-1"))

    assert target.name == "eventbridge"
    assert target.send([action(7)]).failed == {}
    assert [body["detail"]["user_id"] for body in bus.received()] == ["user-0007"]


def test_generic_events_through_the_aggregator_reach_the_bus(
    bus: Bus, aggregator_app: Any, dynamodb: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACTION_TARGETS", "eventbridge")
    monkeypatch.setenv("EVENT_BUS_NAME", BUS)
    publish_rows(
        dynamodb,
        [
            rule_row(
                "aggregator", "purchase", "na", "999", "greater_or_equal", "2", "na", "999", "no",
                "9999-99-99", "9999-99-99",
            ),
            rule_row(
                "aggregator", "purchase", "na", "999", "na", "999", "greater", "100", "yes",
                "9999-99-99", "9999-99-99", OutputName="trk_big_spender",
            ),
        ],
    )  # fmt: skip
    event = json.loads((EVENTS / "kinesis-generic-batch.json").read_text())

    response = aggregator_app.lambda_handler(event, lambda_context)

    assert response == {"batchItemFailures": []}
    # A rule without a value condition does not sum, so its sum stays 0.
    arrived = sorted(
        (
            (
                b["detail-type"],
                b["detail"]["user_id"],
                b["detail"]["output_name"],
                b["detail"]["count"],
                b["detail"]["sum"],
            )
            for b in bus.received()
        ),
    )
    assert arrived == [
        ("Reset Event Fired", "user-1004", "trk_big_spender", 1, "120"),
        ("Rule Met", "user-1001", "trk_purchase", 2, "0"),
    ]
