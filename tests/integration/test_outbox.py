"""Actions survive target outages and crashes: committed with the counter, delivered once, by the relay if need be."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pia.aws.wiring import Wiring
from pia.counting.store import CounterStore, outbox_partitions
from pia_cli.lambda_events import StreamRecord, kinesis_event, record_data, sequence
from tests.conftest import AGGREGATES_TABLE, handler_clients, publish_rows
from tests.integration.test_aggregator import COURSE_EVERY_3, GREEN_GT_5, pin_event

EVENTS = Path(__file__).resolve().parents[2] / "events"


def outbox_size(dynamodb: Any) -> int:
    total = 0
    for partition in outbox_partitions():
        page = dynamodb.query(
            TableName=AGGREGATES_TABLE,
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": partition}},
        )
        total += page["Count"]
    return total


@pytest.fixture
def relay_app(
    dynamodb: Any, function_env: dict[str, str], recorder: Any, monkeypatch: pytest.MonkeyPatch
) -> Any:
    from action_relay import app

    monkeypatch.setenv("OUTBOX_MIN_AGE_SECONDS", "0")
    with app.container.wired(Wiring(handler_clients(recorder))):
        yield app


def test_pinpoint_outage_after_commit_is_delivered_later_without_recounting(
    aggregator_app: Any, relay_app: Any, dynamodb: Any, recorder: Any, lambda_context: Any
) -> None:
    parsed = publish_rows(dynamodb, [COURSE_EVERY_3])
    recorder.fail_next = 100
    docs = [pin_event("erin", "course_completed", i) for i in range(6)]
    event = kinesis_event([StreamRecord(record_data(d), sequence(i + 1)) for i, d in enumerate(docs)])
    assert aggregator_app.lambda_handler(event, lambda_context) == {"batchItemFailures": []}
    assert recorder.fired() == {}
    assert outbox_size(dynamodb) == 2
    state = CounterStore(dynamodb, AGGREGATES_TABLE).load(parsed.rules[0].rule_id, "erin")
    assert (state.count, state.fired) == (0, 2)

    recorder.fail_next = 0
    result = relay_app.lambda_handler(
        json.loads((EVENTS / "relay-schedule.json").read_text()), lambda_context
    )
    assert result == {"pending": 2, "delivered": 2, "failed": 0}
    assert recorder.fired()[("erin", "trk_course_completed")] == 2
    assert outbox_size(dynamodb) == 0
    assert relay_app.lambda_handler({}, lambda_context)["pending"] == 0
    after = CounterStore(dynamodb, AGGREGATES_TABLE).load(parsed.rules[0].rule_id, "erin")
    assert (after.count, after.fired, after.version) == (state.count, state.fired, state.version)


def test_relay_leaves_young_entries_to_the_aggregator(
    aggregator_app: Any,
    relay_app: Any,
    dynamodb: Any,
    recorder: Any,
    lambda_context: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    publish_rows(dynamodb, [GREEN_GT_5])
    recorder.fail_next = 100
    event = kinesis_event(
        [StreamRecord(record_data(pin_event("fay", n=i)), sequence(i + 1)) for i in range(6)]
    )
    aggregator_app.lambda_handler(event, lambda_context)
    monkeypatch.setenv("OUTBOX_MIN_AGE_SECONDS", "300")
    relay_app.container.cold_start()
    assert relay_app.lambda_handler({}, lambda_context)["pending"] == 0
    assert outbox_size(dynamodb) == 1


def test_crash_between_two_transactions_then_redelivery_counts_exactly_once(
    aggregator_app: Any, dynamodb: Any, recorder: Any, lambda_context: Any
) -> None:
    parsed = publish_rows(dynamodb, [GREEN_GT_5])
    docs = [pin_event(f"user{i % 150:03d}", n=i) for i in range(900)]
    event = kinesis_event([StreamRecord(record_data(d), sequence(i + 1)) for i, d in enumerate(docs)])
    agg = aggregator_app.container.runtime().aggregator
    client = agg._store._client
    calls = {"n": 0}

    def crash_on_second(**kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise SystemExit("container killed between two writes")

    client.meta.events.register("before-call.dynamodb.TransactWriteItems", crash_on_second)
    with pytest.raises(SystemExit):
        aggregator_app.lambda_handler(event, lambda_context)
    client.meta.events.unregister("before-call.dynamodb.TransactWriteItems", crash_on_second)
    partial = CounterStore(dynamodb, AGGREGATES_TABLE).counters_for_rule(parsed.rules[0].rule_id)
    assert 0 < len(partial) < 150, "the crash must land between the two transactions"

    aggregator_app.container.cold_start()
    assert aggregator_app.lambda_handler(event, lambda_context) == {"batchItemFailures": []}
    states = CounterStore(dynamodb, AGGREGATES_TABLE).counters_for_rule(parsed.rules[0].rule_id)
    assert sorted(s.count for s in states) == [6] * 150
    assert len(recorder.user_attributes) == 150
    assert sum(recorder.calls.values()) == 2, "150 endpoints: two UpdateEndpointsBatch calls, none repeated"
    assert outbox_size(dynamodb) == 0


def test_unknown_target_in_config_is_a_clear_error(
    dynamodb: Any, function_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pia.settings import SettingsError, TargetSettings

    with pytest.raises(SettingsError, match="ACTION_TARGETS names unknown target 'carrier-pigeon'"):
        TargetSettings.from_env({"ACTION_TARGETS": "pinpoint,carrier-pigeon", "PINPOINT_APP_ID": "app"})
