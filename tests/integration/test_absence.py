"""Absence rules through the deployed handlers on moto: the evaluator enters quiet users at their due
moment and reads no one else, the aggregator takes them out on their next event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pia.core.actions import NOT_READY, READY
from pia.timeseries.rollups import AUDIENCE_LEASE_DAYS
from tests.conftest import TIMESERIES_TABLE
from tests.integration.timeseries_support import date_row, doc

DAY = datetime(2026, 3, 20, 6, tzinfo=UTC)


def utc(moment: datetime) -> int:
    return int(moment.timestamp())


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
    stack.clock.now = DAY + timedelta(days=5)
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
    assert store.load(rule.series, "amy").keep

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
    for day in range(31, 700, 28):
        # The daily evaluator (every four weeks here) renews her rollup's lease: it never comes near expiry.
        stack.evaluate(DAY + timedelta(days=day))
        held = _items(stack)["amy"]
        assert held["kp"]["BOOL"] and int(held["ttl"]["N"]) > utc(DAY + timedelta(days=day + 30))

    stack.clock.now = DAY + timedelta(days=700)
    stack.aggregate([doc("amy", stack.clock.now)], start=2)
    assert stack.attributes()["amy"][rule.output_name] == NOT_READY


def test_the_held_rollups_of_a_removed_absence_rule_expire(timeseries_stack: Any) -> None:
    """A user in an absence audience keeps their rollup past the retention, but only while a live rule
    holds them: once the rule is removed from the table, nothing evaluates its series again, and its
    held rollups once kept no TTL at all, one item per audience member forever."""
    stack = timeseries_stack
    stack.clock.now = DAY
    stack.monkeypatch.setenv("RAW_EVENT_RETENTION_DAYS", "10")
    stack.restart()
    rule = _absence(stack)
    stack.aggregate([doc("amy", DAY - timedelta(hours=1))], start=1)
    stack.evaluate(DAY + timedelta(days=14))
    assert stack.attributes()["amy"][rule.output_name] == READY

    stack.publish([date_row("greater_or_equal", "1", event="app_open")], activation="2026-04-01")
    for day in range(15, 120, 7):
        stack.evaluate(DAY + timedelta(days=day))
    held = _items(stack)["amy"]
    assert "ttl" in held, "an orphaned held rollup must expire"
    assert int(held["ttl"]["N"]) <= utc(DAY + timedelta(days=14 + 2 * AUDIENCE_LEASE_DAYS + 1))
