"""The aggregator handler on moto, with every Pinpoint request validated against botocore's model."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from pia.counting.store import CounterStore
from pia_cli.lambda_events import StreamRecord, kinesis_event, record_data, sequence
from tests.conftest import AGGREGATES_TABLE, publish_rows, rule_row

EVENTS = Path(__file__).resolve().parents[2] / "events"
GREEN_GT_5 = rule_row(
    "aggregator", "greenbutton", "na", "999", "greater", "5", "na", "999", "no", "9999-99-99", "9999-99-99"
)
GREEN_GT_50 = rule_row(
    "aggregator", "greenbutton", "na", "999", "greater", "50", "na", "999", "no", "9999-99-99", "9999-99-99"
)
"""Not met within these tests' events, so it never settles and its count shows every event."""
COURSE_EVERY_3 = rule_row(
    "aggregator",
    "course_completed",
    "na",
    "999",
    "equal",
    "3",
    "na",
    "999",
    "yes",
    "9999-99-99",
    "9999-99-99",
)


def pin_event(user: str | None, event_type: str = "greenbutton", n: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "event_type": event_type,
        "event_timestamp": 1795165200000 + n * 1000,
        "client": {"client_id": f"ep-{user}"},
        "attributes": extra.get("attributes", {}),
        "metrics": extra.get("metrics", {"clicks": 1}),
        "endpoint": {"User": {"UserId": user} if user else {}},
    }


def batch(docs: list[dict[str, Any]], start: int = 1) -> dict[str, Any]:
    return kinesis_event(
        [
            StreamRecord(record_data(d), sequence(start + i), partition_key=f"pk{i % 3}")
            for i, d in enumerate(docs)
        ]
    )


def counter(dynamodb: Any, rule_id: str, user: str) -> Any:
    return CounterStore(dynamodb, AGGREGATES_TABLE).load(rule_id, user)


def test_sample_event_file_drives_the_handler(
    aggregator_app: Any, dynamodb: Any, recorder: Any, lambda_context: Any
) -> None:
    parsed = publish_rows(dynamodb, [GREEN_GT_5])
    event = json.loads((EVENTS / "kinesis-batch.json").read_text())
    response = aggregator_app.lambda_handler(event, lambda_context)
    assert response == {"batchItemFailures": []}
    assert recorder.user_attributes["user-0001"] == {"trk_greenbutton": "ready"}
    state = counter(dynamodb, parsed.rules[0].rule_id, "user-0001")
    assert state.count == 6 and state.ready


def test_reset_rule_fires_pinpoint_events_once_per_crossing(
    aggregator_app: Any, dynamodb: Any, recorder: Any, lambda_context: Any
) -> None:
    publish_rows(dynamodb, [COURSE_EVERY_3])
    docs = [pin_event("alice", "course_completed", i) for i in range(7)]
    aggregator_app.lambda_handler(batch(docs), lambda_context)
    assert recorder.fired()[("alice", "trk_course_completed")] == 2
    assert recorder.calls["PutEvents"] == 1


def test_redelivered_whole_batch_counts_once_and_acts_once(
    aggregator_app: Any, dynamodb: Any, recorder: Any, lambda_context: Any
) -> None:
    parsed = publish_rows(dynamodb, [GREEN_GT_5, COURSE_EVERY_3])
    docs = [
        pin_event(f"u{i % 4}", random.Random(i).choice(["greenbutton", "course_completed"]), i)
        for i in range(80)
    ]
    event = batch(docs)
    aggregator_app.lambda_handler(event, lambda_context)
    first = {
        (r.rule_id, u): counter(dynamodb, r.rule_id, u)
        for r in parsed.rules
        for u in ("u0", "u1", "u2", "u3")
    }
    calls = dict(recorder.calls)
    fired = recorder.fired()
    aggregator_app.container.cold_start()
    aggregator_app.lambda_handler(event, lambda_context)
    second = {
        (r.rule_id, u): counter(dynamodb, r.rule_id, u)
        for r in parsed.rules
        for u in ("u0", "u1", "u2", "u3")
    }
    assert {k: (v.count, v.fired) for k, v in first.items()} == {
        k: (v.count, v.fired) for k, v in second.items()
    }
    assert dict(recorder.calls) == calls
    assert recorder.fired() == fired


def test_partial_redelivery_from_a_checkpoint_counts_the_rest_exactly_once(
    aggregator_app: Any, dynamodb: Any, lambda_context: Any
) -> None:
    parsed = publish_rows(dynamodb, [GREEN_GT_50])
    docs = [pin_event("bob", n=i) for i in range(10)]
    full = batch(docs)
    first_half = {"Records": full["Records"][:6]}
    from_checkpoint = {"Records": full["Records"][3:]}
    aggregator_app.lambda_handler(first_half, lambda_context)
    aggregator_app.container.cold_start()
    aggregator_app.lambda_handler(from_checkpoint, lambda_context)
    assert counter(dynamodb, parsed.rules[0].rule_id, "bob").count == 10


def test_bad_records_are_reported_and_their_neighbours_count(
    aggregator_app: Any, dynamodb: Any, lambda_context: Any, caplog: pytest.LogCaptureFixture
) -> None:
    parsed = publish_rows(dynamodb, [GREEN_GT_5])
    good = [pin_event("carol", n=i) for i in range(4)]
    bad_payloads = [
        b"not json at all",
        record_data(pin_event(None)),
        record_data(pin_event("carol", metrics={"clicks": "many"})),
        record_data(pin_event("carol", attributes={"note": {"nested": "object"}})),
    ]
    records = [StreamRecord(record_data(d), sequence(i + 1)) for i, d in enumerate(good)]
    records += [StreamRecord(p, sequence(100 + i)) for i, p in enumerate(bad_payloads)]
    event = kinesis_event(records)
    event["Records"].append(
        {**event["Records"][0], "kinesis": {**event["Records"][0]["kinesis"], "data": "%%%"}}
    )
    event["Records"][-1]["kinesis"]["sequenceNumber"] = sequence(200)
    response = aggregator_app.lambda_handler(event, lambda_context)
    assert response == {"batchItemFailures": []}, "poison records must not hold the shard"
    assert counter(dynamodb, parsed.rules[0].rule_id, "carol").count == 4
    rejected = [r for r in caplog.records if r.getMessage() == "record rejected"]
    assert sorted(r.field for r in rejected) == ["attributes.note", "data", "data", "metrics.clicks"]  # type: ignore[attr-defined]
    assert all(r.sequence_number and r.reason for r in rejected)  # type: ignore[attr-defined]


PAGE_URL = "https://shop.example.com/catalogue/books/" + "b" * 109


def test_a_pinpoint_event_with_a_150_character_attribute_is_counted(
    aggregator_app: Any, dynamodb: Any, lambda_context: Any
) -> None:
    """Pinpoint's event attribute values go up to 200 characters; 100 is its endpoint-attribute limit."""
    assert len(PAGE_URL) == 150
    parsed = publish_rows(
        dynamodb,
        [
            rule_row(
                "aggregator",
                "page_view",
                "page",
                PAGE_URL,
                "greater_or_equal",
                "2",
                "na",
                "999",
                "no",
                "9999-99-99",
                "9999-99-99",
                OutputName="trk_long_page",
            )
        ],
    )
    views = [
        pin_event("dave", "page_view", n, attributes={"page": PAGE_URL, "ref": "r" * 300}) for n in range(2)
    ]
    event = kinesis_event([StreamRecord(record_data(d), sequence(i + 1)) for i, d in enumerate(views)])

    assert aggregator_app.lambda_handler(event, lambda_context) == {"batchItemFailures": []}
    assert counter(dynamodb, parsed.rules[0].rule_id, "dave").count == 2


def test_throttled_writes_are_reported_for_retry_and_lose_nothing(
    aggregator_app: Any, dynamodb: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed = publish_rows(dynamodb, [GREEN_GT_5])
    agg = aggregator_app.container.runtime().aggregator
    store = agg._store
    real = store.client.batch_execute_statement

    def always_throttled(**_: Any) -> Any:
        raise ClientError(
            {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}},
            "BatchExecuteStatement",
        )

    monkeypatch.setattr(store, "_sleep", lambda _s: None)
    monkeypatch.setattr(store.client, "batch_execute_statement", always_throttled)
    event = batch([pin_event("dave", n=i) for i in range(3)])
    response = aggregator_app.lambda_handler(event, lambda_context)
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == [
        r["kinesis"]["sequenceNumber"] for r in event["Records"]
    ]
    monkeypatch.setattr(store.client, "batch_execute_statement", real)
    assert aggregator_app.lambda_handler(event, lambda_context) == {"batchItemFailures": []}
    assert counter(dynamodb, parsed.rules[0].rule_id, "dave").count == 3


def test_more_counters_than_one_transaction_holds(
    aggregator_app: Any, dynamodb: Any, lambda_context: Any
) -> None:
    parsed = publish_rows(dynamodb, [GREEN_GT_5])
    docs = [pin_event(f"user{i:03d}", n=i) for i in range(250)]
    assert aggregator_app.lambda_handler(batch(docs), lambda_context) == {"batchItemFailures": []}
    store = CounterStore(dynamodb, AGGREGATES_TABLE)
    assert len(store.counters_for_rule(parsed.rules[0].rule_id)) == 250


def test_a_record_the_producer_sent_twice_counts_once(
    aggregator_app: Any, dynamodb: Any, lambda_context: Any
) -> None:
    parsed = publish_rows(dynamodb, [GREEN_GT_5])

    def generic(n: int, event_id: str) -> dict[str, Any]:
        return {
            "user_id": "gina",
            "event_type": "greenbutton",
            "timestamp": 1795165200000 + n,
            "metrics": {"clicks": 1},
            "event_id": event_id,
        }

    docs = [generic(i, f"evt-{i}") for i in range(4)] + [generic(9, "evt-2")]
    assert aggregator_app.lambda_handler(batch(docs), lambda_context) == {"batchItemFailures": []}
    aggregator_app.container.cold_start()
    aggregator_app.lambda_handler(batch([generic(3, "evt-3")], start=50), lambda_context)
    assert counter(dynamodb, parsed.rules[0].rule_id, "gina").count == 4


def test_lane_marks_stay_bounded_under_parallelization_with_random_partition_keys(
    aggregator_app: Any, dynamodb: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect 3: with ParallelizationFactor > 1 each random partition key added a lane mark, kept 25
    hours, until the counter item passed 400 KB and its write failed on every delivery."""
    import uuid

    from pia.counting.store import counter_key, item_size

    monkeypatch.setenv("PARALLELIZATION_FACTOR", "4")
    aggregator_app.container.cold_start()
    parsed = publish_rows(dynamodb, [{**GREEN_GT_50, "Target-C": "100000"}])
    rule_id = parsed.rules[0].rule_id
    sizes = []
    last: dict[str, Any] = {}
    for b in range(5):
        records = [
            StreamRecord(
                record_data(pin_event("kai", n=b * 100 + i)), sequence(b * 100 + i + 1), str(uuid.uuid4())
            )
            for i in range(100)
        ]
        last = kinesis_event(records)
        assert aggregator_app.lambda_handler(last, lambda_context) == {"batchItemFailures": []}
        item = dynamodb.get_item(TableName=AGGREGATES_TABLE, Key=counter_key(rule_id, "kai"))["Item"]
        sizes.append(item_size(item))
    assert max(sizes) < 2_048, f"the counter item grew: {sizes} bytes"
    assert aggregator_app.lambda_handler(last, lambda_context) == {"batchItemFailures": []}
    aggregator_app.container.cold_start()
    assert aggregator_app.lambda_handler(last, lambda_context) == {"batchItemFailures": []}
    assert counter(dynamodb, rule_id, "kai").count == 500, "a redelivered batch still counts once"


def test_lane_recovery_matches_lanes_exactly_not_by_prefix(
    aggregator_app: Any, dynamodb: Any, recorder: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect 5: recovery on lane ``<shard>/acct`` also found what lane ``<shard>/acct#7`` owed, so two
    invocations could send the same actions."""
    monkeypatch.setenv("PARALLELIZATION_FACTOR", "2")
    aggregator_app.container.cold_start()
    publish_rows(dynamodb, [GREEN_GT_5])
    target = type(aggregator_app.container.runtime().aggregator._targets[0])
    send = target.send

    def killed(*_: Any) -> None:
        raise SystemExit("killed after the commit, before the send")

    monkeypatch.setattr(target, "send", killed)
    lane_b = kinesis_event(
        [StreamRecord(record_data(pin_event("lee", n=i)), sequence(i + 1), "acct#7") for i in range(6)]
    )
    with pytest.raises(SystemExit):
        aggregator_app.lambda_handler(lane_b, lambda_context)
    monkeypatch.setattr(target, "send", send)
    lane_a = kinesis_event(
        [StreamRecord(record_data(pin_event("max", n=i)), sequence(100 + i), "acct") for i in range(2)]
    )
    assert aggregator_app.lambda_handler(lane_a, lambda_context) == {"batchItemFailures": []}
    assert aggregator_app.lambda_handler(lane_a, lambda_context) == {"batchItemFailures": []}, "a redelivery"
    assert "lee" not in recorder.user_attributes, "lane acct must not send what lane acct#7 owes"
    assert aggregator_app.lambda_handler(lane_b, lambda_context) == {"batchItemFailures": []}
    assert recorder.user_attributes["lee"] == {"trk_greenbutton": "ready"}, "its own redelivery sends it"
