"""Actions survive target outages and crashes: owed by the item that produced them, delivered once, by
the relay if need be, never after a newer value, and never from an outbox that grows without bound."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from pia.aws.state_table import PARKED_PK, query_partition
from pia.core.state import MAX_ATTEMPTS
from pia.counting.store import CounterStore, still_owed
from pia_cli.lambda_events import StreamRecord, kinesis_event, record_data, sequence
from tests.conftest import AGGREGATES_TABLE, later, publish_rows, rule_row
from tests.integration.test_aggregator import COURSE_EVERY_3, GREEN_GT_5, batch, pin_event

EVENTS = Path(__file__).resolve().parents[2] / "events"
EVERY_EVENT = rule_row(
    "aggregator",
    "course_completed",
    "na",
    "999",
    "equal",
    "1",
    "na",
    "999",
    "yes",
    "9999-99-99",
    "9999-99-99",
)


def owed(dynamodb: Any) -> int:
    """Actions the counters still owe, wherever they are."""
    return len(still_owed(dynamodb.scan(TableName=AGGREGATES_TABLE)["Items"]))


def test_pinpoint_outage_after_commit_is_delivered_later_without_recounting(
    aggregator_app: Any,
    relay_app: Any,
    dynamodb: Any,
    recorder: Any,
    lambda_context: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parsed = publish_rows(dynamodb, [COURSE_EVERY_3])
    recorder.fail_next = 100
    docs = [pin_event("erin", "course_completed", i) for i in range(6)]
    event = kinesis_event([StreamRecord(record_data(d), sequence(i + 1)) for i, d in enumerate(docs)])
    assert aggregator_app.lambda_handler(event, lambda_context) == {"batchItemFailures": []}
    assert recorder.fired() == {}
    assert owed(dynamodb) == 2
    state = CounterStore(dynamodb, AGGREGATES_TABLE).load(parsed.rules[0].rule_id, "erin")
    assert (state.count, state.fired) == (0, 2)

    recorder.fail_next = 0
    later(relay_app, 2)
    result = relay_app.lambda_handler(
        json.loads((EVENTS / "relay-schedule.json").read_text()), lambda_context
    )
    assert result == {"pending": 2, "delivered": 2, "failed": 0}
    assert recorder.fired()[("erin", "trk_course_completed")] == 2
    assert owed(dynamodb) == 0
    assert relay_app.lambda_handler({}, lambda_context)["pending"] == 0
    after = CounterStore(dynamodb, AGGREGATES_TABLE).load(parsed.rules[0].rule_id, "erin")
    assert (after.count, after.fired) == (state.count, state.fired)


def test_relay_leaves_entries_alone_until_they_are_due(
    aggregator_app: Any, relay_app: Any, dynamodb: Any, recorder: Any, lambda_context: Any
) -> None:
    publish_rows(dynamodb, [GREEN_GT_5])
    recorder.fail_next = 100
    event = kinesis_event(
        [StreamRecord(record_data(pin_event("fay", n=i)), sequence(i + 1)) for i in range(6)]
    )
    aggregator_app.lambda_handler(event, lambda_context)
    assert relay_app.lambda_handler({}, lambda_context)["pending"] == 0
    assert owed(dynamodb) == 1


def test_crash_between_two_writes_then_redelivery_counts_exactly_once_and_acts_once(
    aggregator_app: Any, dynamodb: Any, recorder: Any, lambda_context: Any
) -> None:
    parsed = publish_rows(dynamodb, [GREEN_GT_5])
    docs = [pin_event(f"user{i % 150:03d}", n=i) for i in range(900)]
    event = kinesis_event([StreamRecord(record_data(d), sequence(i + 1)) for i, d in enumerate(docs)])
    agg = aggregator_app.container.runtime().aggregator
    client = agg._store.client
    calls = {"n": 0}

    def crash_on_the_76th(**kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 4:
            raise SystemExit("container killed between two writes: the 76th to 100th")

    client.meta.events.register("before-call.dynamodb.BatchExecuteStatement", crash_on_the_76th)
    with pytest.raises(SystemExit):
        aggregator_app.lambda_handler(event, lambda_context)
    client.meta.events.unregister("before-call.dynamodb.BatchExecuteStatement", crash_on_the_76th)
    partial = CounterStore(dynamodb, AGGREGATES_TABLE).counters_for_rule(parsed.rules[0].rule_id)
    assert len(partial) == 75 and owed(dynamodb) == 75, "committed, owing their actions, never sent"

    aggregator_app.container.cold_start()
    assert aggregator_app.lambda_handler(event, lambda_context) == {"batchItemFailures": []}
    states = CounterStore(dynamodb, AGGREGATES_TABLE).counters_for_rule(parsed.rules[0].rule_id)
    assert sorted(s.count for s in states) == [6] * 150
    assert len(recorder.user_attributes) == 150
    assert sum(recorder.calls.values()) == 2, "150 endpoints: two UpdateEndpointsBatch calls, none repeated"
    assert owed(dynamodb) == 0


def test_one_user_crossing_more_often_than_a_transaction_holds_commits_and_sends_all(
    aggregator_app: Any, dynamodb: Any, recorder: Any, lambda_context: Any
) -> None:
    """Defect 1: a ``count = 1, reset`` rule and one user with 150 events in one batch made a transaction
    of 151 items, which DynamoDB refuses on every delivery."""
    parsed = publish_rows(dynamodb, [EVERY_EVENT])
    docs = [pin_event("hal", "course_completed", i) for i in range(150)]
    event = kinesis_event([StreamRecord(record_data(d), sequence(i + 1)) for i, d in enumerate(docs)])
    agg = aggregator_app.container.runtime().aggregator
    refused: list[int] = []

    def at_most_100_items(params: dict[str, Any], **_: Any) -> None:
        if len(params.get("TransactItems", [])) > 100:
            refused.append(len(params["TransactItems"]))
            raise ValueError("ValidationException: Member must have length less than or equal to 100")

    agg._store.client.meta.events.register(
        "provide-client-params.dynamodb.TransactWriteItems", at_most_100_items
    )
    assert aggregator_app.lambda_handler(event, lambda_context) == {"batchItemFailures": []}
    assert refused == []
    assert recorder.fired()[("hal", "trk_course_completed")] == 150
    state = CounterStore(dynamodb, AGGREGATES_TABLE).load(parsed.rules[0].rule_id, "hal")
    assert (state.fired, state.pending) == (150, ())


def test_an_action_no_target_will_ever_take_is_parked_after_bounded_attempts(
    aggregator_app: Any,
    relay_app: Any,
    dynamodb: Any,
    recorder: Any,
    lambda_context: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Defect 4: an entry a target can never accept was retried every minute, forever."""
    publish_rows(dynamodb, [GREEN_GT_5])
    recorder.fail_next = 10_000
    event = kinesis_event(
        [StreamRecord(record_data(pin_event("ivy", n=i)), sequence(i + 1)) for i in range(6)]
    )
    aggregator_app.lambda_handler(event, lambda_context)
    delivered = 0
    for hour in range(1, 24):
        later(relay_app, 60 * hour)
        delivered += relay_app.lambda_handler({}, lambda_context)["delivered"]
    assert delivered == 0 and owed(dynamodb) == 0
    parked = query_partition(dynamodb, AGGREGATES_TABLE, PARKED_PK)
    assert [int(p["n"]["N"]) for p in parked] == [MAX_ATTEMPTS]
    assert json.loads(parked[0]["a"]["S"])["user_id"] == "ivy"
    assert relay_app.lambda_handler({}, lambda_context)["pending"] == 0


def test_the_relay_works_in_bounded_pages_and_sends_as_it_goes(
    aggregator_app: Any,
    relay_app: Any,
    dynamodb: Any,
    recorder: Any,
    lambda_context: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Defect 4: the relay read the whole outbox and claimed every entry before its first send."""
    publish_rows(dynamodb, [GREEN_GT_5])
    recorder.fail_next = 10_000
    docs = [pin_event(f"u{i % 120:03d}", n=i) for i in range(720)]
    event = kinesis_event([StreamRecord(record_data(d), sequence(i + 1)) for i, d in enumerate(docs)])
    aggregator_app.lambda_handler(event, lambda_context)
    assert owed(dynamodb) == 120
    recorder.fail_next = 0
    order: list[str] = []
    later(relay_app, 2)
    tables = relay_app.container.runtime().tables
    client = tables[0].client
    client.meta.events.register("before-call.dynamodb.Query", lambda **_: order.append("read"))
    client.meta.events.register(
        "before-call.dynamodb.BatchExecuteStatement", lambda **_: order.append("write")
    )
    monkeypatch.setattr("pia.targets.relay.PAGE_SIZE", 10)
    result = relay_app.lambda_handler({}, lambda_context)
    assert result["delivered"] == 120 and owed(dynamodb) == 0
    assert sum(recorder.calls.values()) >= 12, "one send per page of ten"
    first_send = order.index("write") + 2
    assert order.count("read") >= 12 and "read" in order[first_send:], (
        "reads a page, sends it, reads the next"
    )


def test_an_action_the_target_refused_is_logged_as_deferred_not_as_an_uncommitted_record(
    aggregator_app: Any, dynamodb: Any, recorder: Any, lambda_context: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """#15 defect 8: "batch item not committed" was logged, as an error, for actions that were
    committed and only deferred to the relay."""
    import logging

    publish_rows(dynamodb, [GREEN_GT_5])
    recorder.fail_next = 100
    event = kinesis_event(
        [StreamRecord(record_data(pin_event("joy", n=i)), sequence(i + 1)) for i in range(6)]
    )
    with caplog.at_level(logging.INFO):
        assert aggregator_app.lambda_handler(event, lambda_context) == {"batchItemFailures": []}
    uncommitted = [r for r in caplog.records if r.getMessage() == "batch item not committed"]
    deferred = [r for r in caplog.records if "target refused it" in r.getMessage()]
    assert uncommitted == []
    assert [r.levelname for r in deferred] == ["WARNING"]


def test_a_delivered_action_costs_no_clearing_write_and_is_never_sent_again(
    aggregator_app: Any, dynamodb: Any, recorder: Any, lambda_context: Any
) -> None:
    """The reset rule fires on every event: each batch's action stays in the item after delivery
    (no write clears it); the next batch of the lane drops it with the counter's own write; a
    successful batch delivered again sends nothing (the lane's sent mark)."""
    publish_rows(dynamodb, [EVERY_EVENT])
    client = aggregator_app.container.runtime().aggregator._store.client
    statements: list[int] = []
    client.meta.events.register(
        "before-parameter-build.dynamodb.BatchExecuteStatement",
        lambda params, **_: statements.append(len(params["Statements"])),
    )
    first = batch([pin_event("ann", "course_completed", 1)], start=1)
    assert aggregator_app.lambda_handler(first, lambda_context) == {"batchItemFailures": []}
    assert statements == [1] and recorder.fired()[("ann", "trk_course_completed")] == 1
    held = dynamodb.scan(TableName=AGGREGATES_TABLE)["Items"]
    assert owed(dynamodb) == 0 and sum(len(i.get("ob", {}).get("L", [])) for i in held) == 1

    aggregator_app.container.cold_start()
    assert aggregator_app.lambda_handler(first, lambda_context) == {"batchItemFailures": []}
    assert recorder.fired()[("ann", "trk_course_completed")] == 1, "the lane's mark says it was sent"

    second = batch([pin_event("ann", "course_completed", 2)], start=2)
    assert aggregator_app.lambda_handler(second, lambda_context) == {"batchItemFailures": []}
    assert recorder.fired()[("ann", "trk_course_completed")] == 2
    (item,) = [i for i in dynamodb.scan(TableName=AGGREGATES_TABLE)["Items"] if i["pk"]["S"].startswith("R#")]
    assert len(item["ob"]["L"]) == 1, "the first action dropped by the counter's next write"


def test_a_crash_between_the_send_and_the_lane_mark_resends_that_batch_s_actions_once(
    aggregator_app: Any, dynamodb: Any, recorder: Any, lambda_context: Any
) -> None:
    publish_rows(dynamodb, [EVERY_EVENT])
    client = aggregator_app.container.runtime().aggregator._store.client

    def crash(**_: Any) -> None:
        raise SystemExit("container killed after the send, before the lane mark")

    client.meta.events.register("before-call.dynamodb.PutItem", crash)
    first = batch([pin_event("ann", "course_completed", 1)], start=1)
    with pytest.raises(SystemExit):
        aggregator_app.lambda_handler(first, lambda_context)
    client.meta.events.unregister("before-call.dynamodb.PutItem", crash)
    aggregator_app.container.cold_start()
    assert aggregator_app.lambda_handler(first, lambda_context) == {"batchItemFailures": []}
    assert aggregator_app.lambda_handler(first, lambda_context) == {"batchItemFailures": []}
    assert recorder.fired()[("ann", "trk_course_completed")] == 2, "the documented window: once more"
    assert owed(dynamodb) == 0


def test_a_lane_mark_throttled_through_every_attempt_clears_the_items_instead(
    aggregator_app: Any, dynamodb: Any, recorder: Any, lambda_context: Any
) -> None:
    """Without its sent mark, a delivered entry of a counter never written again (settled, or the
    lane's last batch) would stay owed, and a redelivery of the batch would send it again: found by
    the randomized reliability test (scenario 11) with a third of DynamoDB calls throttled."""
    publish_rows(dynamodb, [EVERY_EVENT])
    client = aggregator_app.container.runtime().aggregator._store.client

    def throttle(**_: Any) -> None:
        raise ClientError(
            {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "throttled"}}, "PutItem"
        )

    client.meta.events.register("before-call.dynamodb.PutItem", throttle)
    first = batch([pin_event("ann", "course_completed", 1)], start=1)
    assert aggregator_app.lambda_handler(first, lambda_context) == {"batchItemFailures": []}
    client.meta.events.unregister("before-call.dynamodb.PutItem", throttle)
    assert recorder.fired()[("ann", "trk_course_completed")] == 1
    held = dynamodb.scan(TableName=AGGREGATES_TABLE)["Items"]
    assert not [i for i in held if i["pk"]["S"].startswith("L#")], "no mark was written"
    assert owed(dynamodb) == 0 and sum(len(i.get("ob", {}).get("L", [])) for i in held) == 0

    aggregator_app.container.cold_start()
    assert aggregator_app.lambda_handler(first, lambda_context) == {"batchItemFailures": []}
    assert recorder.fired()[("ann", "trk_course_completed")] == 1, "the cleared item owes nothing to resend"
