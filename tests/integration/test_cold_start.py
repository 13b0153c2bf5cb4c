"""What a new container builds on its first batch: each client once, whatever the number of
adapters that use it (a second DynamoDB client costs the cold start some 35 ms of CPU, ``make bench``)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from pia.aws.wiring import Wiring
from pia_cli.local_clients import LocalClients
from pia_cli.local_lambda import handler_module
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


def test_a_new_evaluator_container_makes_one_dynamodb_client_with_the_athena_backfill(
    monkeypatch: Any,
) -> None:
    """The Athena backfill's pending-query ledger lives in the time-series table, beside the rollups,
    the coverage and the seen values: one client serves them all."""
    for name, value in {
        "RULESET_TABLE": "rules",
        "TIMESERIES_TABLE": "ts",
        "AGGREGATES_TABLE": "agg",
        "RAW_EVENTS_BUCKET": "raw",
        "ATHENA_WORKGROUP": "wg",
        "GLUE_DATABASE": "db",
        "BACKFILL_RESULTS_BUCKET": "results",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    made: Counter[str] = Counter()

    def counting(service: str, region_name: str | None = None) -> Any:
        made[service] += 1
        return object()

    handler_module("evaluator").build(Wiring(counting))

    assert made["dynamodb"] == 1, made
