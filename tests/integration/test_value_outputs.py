"""Value outputs end to end on moto (issue #16, item 2): the aggregator writes a rule's aggregate as the
attribute's value, once per change; a change inside the rate limit is held in the counter's outbox
and the relay sends the latest value when the interval ends; a redelivery sends nothing twice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pia.rules.aggregates import VALUE_UPDATE_SECONDS
from tests.conftest import PURCHASE_NO_CONDITION, later, publish_rows, rule_row
from tests.integration.test_aggregator import batch, counter, pin_event

EVENTS = Path(__file__).resolve().parents[2] / "events"
LTV = rule_row(
    *PURCHASE_NO_CONDITION, Aggregate="sum", MetricName="price", Output="value", OutputName="trk_ltv"
)


def purchase(user: str, n: int, price: str) -> dict[str, Any]:
    return pin_event(user, "purchase", n, metrics={"price": float(price)})


def test_the_latest_value_is_sent_once_per_interval_and_never_lost(
    aggregator_app: Any,
    relay_app: Any,
    dynamodb: Any,
    recorder: Any,
    lambda_context: Any,
) -> None:
    parsed = publish_rows(dynamodb, [LTV])
    first = batch([purchase("ana", 0, "400.25"), purchase("ana", 1, "12.25")])
    assert aggregator_app.lambda_handler(first, lambda_context) == {"batchItemFailures": []}
    assert recorder.user_attributes["ana"] == {"trk_ltv": "412.50"}

    second = batch([purchase("ana", 2, "10"), purchase("ana", 3, "0.5")], start=3)
    assert aggregator_app.lambda_handler(second, lambda_context) == {"batchItemFailures": []}
    assert recorder.user_attributes["ana"] == {"trk_ltv": "412.50"}, "inside the interval: held"
    state = counter(dynamodb, parsed.rules[0].rule_id, "ana")
    assert state.shown == "423.00" and state.due > 0 and len(state.pending) == 1

    assert aggregator_app.lambda_handler(second, lambda_context) == {"batchItemFailures": []}
    assert counter(dynamodb, parsed.rules[0].rule_id, "ana").total == state.total, "redelivery counts nothing"

    schedule = json.loads((EVENTS / "relay-schedule.json").read_text())
    later(relay_app, 1)
    relay_app.lambda_handler(schedule, lambda_context)
    assert recorder.user_attributes["ana"] == {"trk_ltv": "412.50"}, "the relay waits for the interval too"
    later(relay_app, VALUE_UPDATE_SECONDS // 60 + 1)
    relay_app.lambda_handler(schedule, lambda_context)
    assert recorder.user_attributes["ana"] == {"trk_ltv": "423.00"}
    assert not counter(dynamodb, parsed.rules[0].rule_id, "ana").pending
