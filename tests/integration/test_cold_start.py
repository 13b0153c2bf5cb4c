"""What a new aggregator container builds on its first batch: each client once, whatever the number of
adapters that use it (a second DynamoDB client costs the cold start some 35 ms of CPU, ``make bench``)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from pia.aws.wiring import Wiring
from pia_cli.local_clients import LocalClients
from tests.integration.timeseries_support import date_row, doc


def test_a_new_container_makes_one_dynamodb_client_for_counters_rollups_and_rules(
    timeseries_stack: Any,
) -> None:
    stack = timeseries_stack
    stack.clock.now = datetime(2026, 3, 10, 12, tzinfo=UTC)
    stack.publish([date_row("greater_or_equal", "2")], activation="2026-03-01")
    made: Counter[str] = Counter()

    def counting(service: str, region_name: str | None = None) -> Any:
        made[service] += 1
        return stack.calls(service, region_name)

    stack.aggregator.container.rewire(Wiring(LocalClients("pia-test", base=counting), stack.clock))
    docs = [doc("dora", datetime(2026, 3, 9, hour, tzinfo=UTC)) for hour in (8, 9)]
    assert stack.aggregate(docs, start=1) == {"batchItemFailures": []}

    assert stack.attributes() == {"dora": {"trk_date_purchase": "ready"}}, "the time-series path ran"
    assert made["dynamodb"] == 1
