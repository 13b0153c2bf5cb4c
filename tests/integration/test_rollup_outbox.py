"""A rollup's outbox bound (MAX_PENDING entries) against a series with more rules than it holds: no
change is parked while the targets are healthy, and none vanishes when they are not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pia.core.actions import READY
from pia.core.state import MAX_PENDING
from tests.integration.timeseries_support import date_row, doc

DAY = datetime(2026, 3, 20, 6, tzinfo=UTC)
TIERS = MAX_PENDING + 5


def _tiers(stack: Any) -> Any:
    """Loyalty tiers on one event: purchases in the last 30 days >= 1, >= 2, ..."""
    rows = [
        date_row(
            "greater_or_equal",
            str(n),
            start="9999-99-99",
            finish="9999-99-99",
            Window="last 30 days",
            OutputName=f"trk_tier_{n:02d}",
        )
        for n in range(1, TIERS + 1)
    ]
    return stack.publish(rows, activation="2026-01-01", published_at=DAY - timedelta(days=60)).rules[0]


def test_a_user_crossing_more_rules_of_a_series_at_once_than_an_outbox_holds_gets_every_one(
    timeseries_stack: Any,
) -> None:
    """A rollup's outbox holds at most MAX_PENDING entries (a rule's value per target), to bound the
    item. The real-time path and the evaluator put every change of a write in it at once, and the
    entries past the bound were parked at once (the evaluator dropped them): 30 loyalty tiers on one
    event and a user crossing them all in one batch lost a tier with the targets healthy. The changes
    past the bound now wait for the evaluator's next run, which finds the rollup due."""
    stack = timeseries_stack
    stack.clock.now = DAY
    _tiers(stack)
    stack.aggregate([doc("amy", DAY - timedelta(minutes=n)) for n in range(TIERS)], start=1)
    stack.evaluate(DAY + timedelta(hours=1))
    stack.evaluate(DAY + timedelta(hours=2))
    assert stack.attributes()["amy"] == {f"trk_tier_{n:02d}": READY for n in range(1, TIERS + 1)}
    assert stack.rollups().parked() == []


def test_an_evaluator_change_that_overflows_a_full_outbox_is_parked_not_dropped(
    timeseries_stack: Any,
) -> None:
    """With the target refusing, a rollup's outbox fills up with its refused entries; the evaluator's
    next change then pushes the oldest out. The real-time path parked it for an operator; the
    evaluator dropped it without a trace."""
    stack = timeseries_stack
    stack.clock.now = DAY
    rule = _tiers(stack)
    stack.recorder.failure_code = "BadRequestException"
    stack.recorder.fail_next = 10**6
    stack.aggregate([doc("amy", DAY - timedelta(minutes=n)) for n in range(TIERS)], start=1)
    stack.evaluate(DAY + timedelta(hours=1))
    store = stack.rollups()
    owed = {p.action.output_name for p in store.load(rule.series, "amy").pending}
    parked = {p.action.output_name for p in store.parked()}
    assert len(owed) == MAX_PENDING and len(parked) == 1 and not owed & parked
    assert owed | parked == {f"trk_tier_{n:02d}" for n in range(1, MAX_PENDING + 2)}
