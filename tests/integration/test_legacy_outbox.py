"""Outbox entries an upgrade left in the old layout (an item of their own under ``O#<bucket>``) are
delivered once by the relay, deleted, retried and parked like any other, and then no longer read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pia.aws.legacy_outbox import GRACE_SECONDS, LEGACY_PARTITIONS
from pia.aws.state_table import PARKED_PK, query_partition
from pia.core.actions import Action, ActionKind
from pia.core.state import MAX_ATTEMPTS
from tests.conftest import AGGREGATES_TABLE, later

START = datetime.now(UTC)


def old_entry(dynamodb: Any, user_id: str, *, bucket: int = 2, lease: int | None = None) -> None:
    """An outbox entry exactly as the aggregator wrote it before the outbox moved into the items."""
    action = Action(
        action_id=f"act-{user_id}",
        kind=ActionKind.FIRE_EVENT,
        user_id=user_id,
        rule_id="r1",
        output_name="trk_course_completed",
        value=None,
        endpoint_ids=(f"ep-{user_id}",),
        count=3,
        total=Decimal(0),
        occurred_at=START - timedelta(hours=1),
        lane="shardId-000000000000",
    )
    item = {
        "pk": {"S": f"O#{bucket}"},
        "sk": {"S": f"{action.lane}#{action.action_id}#pinpoint"},
        "a": {"S": action.dumps()},
        "tg": {"S": "pinpoint"},
        "t": {"N": str(int(START.timestamp()) - 3600)},
    }
    if lease is not None:
        item["cl"] = {"N": str(lease)}
    dynamodb.put_item(TableName=AGGREGATES_TABLE, Item=item)


def old_items(dynamodb: Any) -> list[Any]:
    return [item for p in LEGACY_PARTITIONS for item in query_partition(dynamodb, AGGREGATES_TABLE, p)]


def test_an_old_outbox_entry_is_delivered_exactly_once_and_deleted(
    relay_app: Any, dynamodb: Any, recorder: Any, lambda_context: Any
) -> None:
    old_entry(dynamodb, "olga")
    old_entry(dynamodb, "oscar", bucket=0)
    result = relay_app.lambda_handler({}, lambda_context)
    assert result["delivered"] == 2
    assert recorder.fired() == {("olga", "trk_course_completed"): 1, ("oscar", "trk_course_completed"): 1}
    assert old_items(dynamodb) == []
    later(relay_app, 5)
    assert relay_app.lambda_handler({}, lambda_context)["delivered"] == 0
    assert sum(recorder.fired().values()) == 2


def test_an_old_entry_an_old_relay_still_holds_waits_for_its_lease(
    relay_app: Any, dynamodb: Any, recorder: Any, lambda_context: Any
) -> None:
    # From the test's own clock, not the module's import: under a loaded suite, START can be minutes old.
    old_entry(dynamodb, "lena", lease=int(datetime.now(UTC).timestamp()) + 90)
    assert relay_app.lambda_handler({}, lambda_context)["delivered"] == 0
    later(relay_app, 2)
    assert relay_app.lambda_handler({}, lambda_context)["delivered"] == 1
    assert recorder.fired() == {("lena", "trk_course_completed"): 1}


def test_an_old_entry_the_target_refuses_is_retried_then_parked(
    relay_app: Any, dynamodb: Any, recorder: Any, lambda_context: Any
) -> None:
    old_entry(dynamodb, "rita")
    recorder.fail_next = 10_000
    delivered = relay_app.lambda_handler({}, lambda_context)["delivered"]
    per_attempt = recorder.calls["PutEvents"]
    assert [int(i["n"]["N"]) for i in old_items(dynamodb)] == [1], "kept, with the refusal counted"
    for hour in range(1, 24):
        later(relay_app, 60 * hour)
        delivered += relay_app.lambda_handler({}, lambda_context)["delivered"]
    assert delivered == 0
    assert recorder.calls["PutEvents"] == per_attempt * MAX_ATTEMPTS, "retried with backoff, then given up"
    assert old_items(dynamodb) == []
    parked = query_partition(dynamodb, AGGREGATES_TABLE, PARKED_PK)
    assert [(p["sk"]["S"], int(p["n"]["N"])) for p in parked] == [("act-rita#pinpoint", MAX_ATTEMPTS)]


def test_once_the_old_partitions_are_empty_the_relay_stops_reading_them(
    relay_app: Any, dynamodb: Any, recorder: Any, lambda_context: Any
) -> None:
    old_entry(dynamodb, "nina")
    client = relay_app.container.runtime().legacy.client
    queried: list[str] = []

    def note(params: Any, **_: Any) -> None:
        if "IndexName" not in params:
            queried.append(params["ExpressionAttributeValues"][":pk"]["S"])

    client.meta.events.register("provide-client-params.dynamodb.Query", note)
    relay_app.lambda_handler({}, lambda_context)
    assert recorder.fired() == {("nina", "trk_course_completed"): 1}
    minutes = GRACE_SECONDS // 60
    for minute in range(1, minutes + 3):
        later(relay_app, minute)
        relay_app.lambda_handler({}, lambda_context)
    reads = len(queried)
    assert reads <= len(LEGACY_PARTITIONS) * (minutes + 3), "one bounded page per partition and run"
    for minute in range(minutes + 3, minutes + 10):
        later(relay_app, minute)
        relay_app.lambda_handler({}, lambda_context)
    assert len(queried) == reads, "drained: not read again by this container"
