"""Absence rules through the deployed handlers on moto: the evaluator enters quiet users at their due
moment and reads no one else, the aggregator takes them out on their next event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pia.core.actions import NOT_READY, READY
from tests.conftest import TIMESERIES_TABLE
from tests.integration.timeseries_support import date_row, doc

DAY = datetime(2026, 3, 20, 6, tzinfo=UTC)


def _absence(stack: Any, days: int = 14) -> Any:
    row = date_row("absent", "na", start="9999-99-99", finish="9999-99-99", Window=f"last {days} days")
    (rule,) = stack.publish([row], activation="2026-01-01", published_at=DAY - timedelta(days=60)).rules
    return rule


def _items(stack: Any) -> dict[str, dict[str, Any]]:
    items = stack.dynamodb.scan(TableName=TIMESERIES_TABLE)["Items"]
    return {item["sk"]["S"]: item for item in items if item["pk"]["S"].startswith("S#")}


def test_quiet_users_enter_at_their_due_moment_and_leave_on_their_next_event(timeseries_stack: Any) -> None:
    stack = timeseries_stack
    stack.clock.now = DAY
    rule = _absence(stack)
    stack.aggregate([doc("amy", DAY - timedelta(hours=1)), doc("bob", DAY - timedelta(hours=1))], start=1)
    stack.aggregate([doc("cat", DAY + timedelta(days=5))], start=3)
    assert stack.attributes() == {}

    # Their last purchase was on 20 March: on 2 April it is still inside the last 14 days.
    stack.evaluate(DAY + timedelta(days=13))
    assert stack.attributes() == {}

    store = stack.rollups()
    stack.calls.reset()
    entered = stack.evaluate(DAY + timedelta(days=14))
    assert {u: a.get(rule.output_name) for u, a in stack.attributes().items()} == {"amy": READY, "bob": READY}
    assert entered["ready"] == 2 and entered["rollups_read"] == 2
    assert store.load(rule.series, "amy").keep and "ttl" not in _items(stack)["amy"]

    # Bob buys again: he leaves in the batch that holds the purchase, before any evaluator run.
    stack.clock.now = DAY + timedelta(days=16)
    stack.aggregate([doc("bob", stack.clock.now)], start=4)
    assert stack.attributes()["bob"][rule.output_name] == NOT_READY
    bob = store.load(rule.series, "bob")
    assert not bob.keep and "ttl" in _items(stack)["bob"]

    # A rerun reads no one whose state cannot change; cat enters on her own due day.
    assert stack.evaluate(DAY + timedelta(days=16, hours=1))["rollups_read"] == 0
    assert "cat" not in stack.attributes()
    stack.evaluate(DAY + timedelta(days=19))
    assert stack.attributes()["cat"][rule.output_name] == READY


def test_a_user_quiet_for_longer_than_the_retention_still_leaves_when_they_come_back(
    timeseries_stack: Any,
) -> None:
    stack = timeseries_stack
    stack.clock.now = DAY
    stack.monkeypatch.setenv("RAW_EVENT_RETENTION_DAYS", "10")
    stack.restart()
    rule = _absence(stack, days=30)
    stack.aggregate([doc("amy", DAY - timedelta(hours=1))], start=1)
    waiting = _items(stack)["amy"]
    assert int(waiting["ttl"]["N"]) > int(waiting["wd"]["N"]), "the item must outlive its due moment"

    stack.evaluate(DAY + timedelta(days=30))
    assert stack.attributes()["amy"][rule.output_name] == READY
    assert "ttl" not in _items(stack)["amy"]

    stack.clock.now = DAY + timedelta(days=700)
    stack.aggregate([doc("amy", stack.clock.now)], start=2)
    assert stack.attributes()["amy"][rule.output_name] == NOT_READY
