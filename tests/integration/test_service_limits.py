"""Local runs reject what AWS rejects (issue #15, "AWS limits enforced locally").

Every handler's clients in tests, the demo, ``pia replay``, the bench and the reliability suite
come from ``pia_cli.local_clients.LocalClients``; these are the answers such a client gets when a
request is over one of AWS's limits: the same error code AWS gives, raised as a ``ClientError``.
Some limits moto enforces itself and some ``pia_cli.service_limits`` adds; the tests do not care
which, only that a local run cannot get away with what AWS refuses.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from pia_cli.recorder import PinpointRecorder
from pia_cli.service_limits import item_size, number_size
from tests.conftest import AGGREGATES_TABLE, handler_clients

KB = 1024


@pytest.fixture
def client(dynamodb: Any) -> Any:
    return handler_clients()("dynamodb")


def key(n: int | str) -> dict[str, Any]:
    return {"pk": {"S": "P"}, "sk": {"S": str(n)}}


def rejected(call: Any) -> dict[str, str]:
    with pytest.raises(ClientError) as raised:
        call()
    error: dict[str, str] = raised.value.response["Error"]
    return error


def put(n: int | str, size: int) -> dict[str, Any]:
    return {"Put": {"TableName": AGGREGATES_TABLE, "Item": {**key(n), "v": {"S": "x" * size}}}}


def test_an_item_over_400_kb_is_rejected_whether_put_updated_or_in_a_transaction(client: Any) -> None:
    big = {**key(1), "v": {"S": "x" * (400 * KB)}}
    assert rejected(lambda: client.put_item(TableName=AGGREGATES_TABLE, Item=big)) == {
        "Code": "ValidationException",
        "Message": "Item size has exceeded the maximum allowed size",
    }
    client.put_item(TableName=AGGREGATES_TABLE, Item={**key(2), "v": {"S": "x" * (300 * KB)}})
    grow = rejected(
        lambda: client.update_item(
            TableName=AGGREGATES_TABLE,
            Key=key(2),
            UpdateExpression="SET w = :w",
            ExpressionAttributeValues={":w": {"S": "y" * (150 * KB)}},
        )
    )
    assert grow["Code"] == "ValidationException" and "maximum allowed size" in grow["Message"]
    in_transaction = rejected(lambda: client.transact_write_items(TransactItems=[put(3, 400 * KB)]))
    assert in_transaction["Code"] == "ValidationException"


def test_a_transaction_takes_at_most_100_items_one_operation_per_item_and_4_mb(client: Any) -> None:
    too_many = rejected(lambda: client.transact_write_items(TransactItems=[put(n, 1) for n in range(101)]))
    assert too_many["Code"] == "ValidationException"
    assert "Member must have length less than or equal to 100" in too_many["Message"]

    twice = rejected(lambda: client.transact_write_items(TransactItems=[put(1, 1), put(1, 2)]))
    assert twice == {
        "Code": "ValidationException",
        "Message": "Transaction request cannot include multiple operations on one item",
    }

    heavy = rejected(lambda: client.transact_write_items(TransactItems=[put(n, 300 * KB) for n in range(14)]))
    assert heavy["Code"] == "ValidationException" and "4 MB" in heavy["Message"]
    client.transact_write_items(TransactItems=[put(n, 300 * KB) for n in range(13)])


def test_a_batch_write_takes_at_most_25_requests(client: Any) -> None:
    requests = [{"PutRequest": {"Item": key(n)}} for n in range(26)]

    error = rejected(lambda: client.batch_write_item(RequestItems={AGGREGATES_TABLE: requests}))

    assert error["Code"] == "ValidationException"
    assert "Member must have length less than or equal to 25" in error["Message"]


def test_a_query_returns_at_most_1_mb_a_page(client: Any) -> None:
    for n in range(5):
        client.put_item(TableName=AGGREGATES_TABLE, Item={**key(n), "v": {"S": "x" * (300 * KB)}})

    page = client.query(
        TableName=AGGREGATES_TABLE,
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {"S": "P"}},
    )

    assert len(page["Items"]) == 3 and "LastEvaluatedKey" in page


def test_eventbridge_takes_at_most_10_entries_and_256_kb_a_call(aws: None) -> None:
    events = handler_clients()("events")

    def entry(size: int) -> dict[str, Any]:
        return {"Source": "pia", "DetailType": "t", "Detail": json.dumps({"v": "x" * size})}

    eleven = rejected(lambda: events.put_events(Entries=[entry(1)] * 11))
    assert eleven["Code"] == "ValidationException"
    assert rejected(lambda: events.put_events(Entries=[entry(130 * KB), entry(130 * KB)])) == {
        "Code": "ValidationException",
        "Message": "Total size of the entries in the request is over the limit.",
    }
    assert events.put_events(Entries=[entry(120 * KB), entry(120 * KB)])["FailedEntryCount"] == 0


def test_pinpoint_takes_at_most_100_endpoints_or_100_events_a_call() -> None:
    recorder = PinpointRecorder()
    pinpoint = handler_clients(recorder)("pinpoint")
    endpoints = [{"Id": f"ep-{n}", "User": {"UserId": f"u-{n}"}} for n in range(101)]
    events = {
        f"ep-{n}": {
            "Endpoint": {},
            "Events": {f"e-{n}": {"EventType": "trk_x", "Timestamp": "2026-01-01T00:00:00Z"}},
        }
        for n in range(101)
    }

    batch = rejected(
        lambda: pinpoint.update_endpoints_batch(ApplicationId="app", EndpointBatchRequest={"Item": endpoints})
    )
    fired = rejected(lambda: pinpoint.put_events(ApplicationId="app", EventsRequest={"BatchItem": events}))

    assert batch["Code"] == fired["Code"] == "BadRequestException"
    assert "100 endpoints" in batch["Message"] and "100 events" in fired["Message"]
    assert recorder.calls == {}


def test_item_sizes_follow_dynamodbs_rules() -> None:
    assert number_size("123.45") == 4
    assert number_size("1000") == 2
    item = {
        "name": {"S": "héllo"},
        "n": {"N": "7"},
        "m": {"M": {"a": {"BOOL": True}}},
        "l": {"L": [{"NULL": True}]},
    }
    assert item_size(item) == (4 + 6) + (1 + 2) + (1 + 3 + 1 + 1 + 1) + (1 + 3 + 1 + 1)
