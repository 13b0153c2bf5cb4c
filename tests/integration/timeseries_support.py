"""Helpers shared by the time-series tests: date rules with an activation, Pinpoint documents at exact
instants, a settable clock, and clients that count what they do."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3

from pia.aws.wiring import Wiring
from pia.rules.ruleset import Ruleset, RulesetTable
from pia.rules.table import ParseResult, parse_rules
from pia_cli.emulator import one_backup_per_transaction
from pia_cli.lambda_events import StreamRecord, kinesis_event, record_data, sequence
from pia_cli.local_clients import LocalClients
from pia_cli.partiql_batches import partiql_target
from tests.conftest import RULESET_TABLE, rule_row


def date_row(
    op_c: str,
    target_c: str,
    op_v: str = "na",
    target_v: str = "999",
    *,
    event: str = "purchase",
    start: str = "2026-03-01",
    finish: str = "2026-03-31",
    attribute: tuple[str, str] = ("na", "na"),
    **extra: str,
) -> dict[str, str]:
    return rule_row("date", event, *attribute, op_c, target_c, op_v, target_v, "no", start, finish, **extra)


def publish(client: Any, rows: list[dict[str, str]], activation: str, published_at: datetime) -> ParseResult:
    """Publish rows as the next ruleset, every date series activated on ``activation``."""
    parsed = parse_rules(enumerate(rows, start=2))
    assert not parsed.errors, parsed.errors
    table = RulesetTable(client, RULESET_TABLE)
    current = table.current()
    series = {r.series: activation for r in parsed.rules if r.rule_type.value == "date"}
    table.publish(
        Ruleset(
            version=current.version + 1,
            rules=parsed.rules,
            published_at=published_at.isoformat(),
            series_activation=series,
        ),
        expected_version=current.version,
    )
    return parsed


def use_partitions(client: Any, partitions: dict[str, int]) -> None:
    """Republish the current ruleset with each series' partition count as the poller records it."""
    table = RulesetTable(client, RULESET_TABLE)
    current = table.current()
    table.publish(
        replace(current, version=current.version + 1, series_partitions=partitions),
        expected_version=current.version,
    )


def doc(
    user: str,
    moment: datetime,
    event: str = "purchase",
    metrics: dict[str, float] | None = None,
    attributes: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "event_type": event,
        "event_timestamp": int(moment.timestamp() * 1000),
        "arrival_timestamp": int(moment.timestamp() * 1000),
        "attributes": attributes or {},
        "metrics": metrics if metrics is not None else {"amount": 1.0},
        "client": {"client_id": f"ep-{user}"},
        "endpoint": {"Id": f"ep-{user}", "User": {"UserId": user}},
    }


def batch(docs: Sequence[dict[str, Any]], start: int, shard: int = 0) -> dict[str, Any]:
    return kinesis_event(
        [
            StreamRecord(record_data(d), sequence(start + i, shard), shard_id=f"shardId-{shard:012d}")
            for i, d in enumerate(docs)
        ]
    )


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime(2026, 3, 10, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Calls:
    """A client factory for a handler's wiring: Pinpoint goes to the validating recorder, and
    every call is counted, with the DynamoDB items each call returned and the Pinpoint attribute
    values sent per user."""

    recorder: Any
    operations: Counter[tuple[str, str]] = field(default_factory=Counter)
    tables: Counter[tuple[str, str]] = field(default_factory=Counter)
    items_read: int = 0
    query_pages: int = 0
    sent: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def __call__(self, service: str, region_name: str | None = None) -> Any:
        if service == "pinpoint":
            client = self.recorder.client()
        else:
            client = boto3.client(service, region_name=region_name or "us-east-1")  # type: ignore[call-overload]
        # The recorder answers on "before-call.pinpoint.*"; a first handler on the same node runs before it.
        client.meta.events.register_first(
            f"before-call.{client.meta.service_model.service_name}.*", self._count
        )
        if service == "dynamodb":
            client.meta.events.register("after-call.dynamodb", self._items)
        return client

    def _count(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        service = model.service_model.service_name
        self.operations[(service, model.name)] += 1
        if service == "dynamodb":
            body = json.loads(params.get("body") or b"{}")
            names = {body.get("TableName")} | {
                p.get("TableName") for t in body.get("TransactItems", []) for p in t.values()
            }
            names |= {partiql_target(s["Statement"])[1] for s in body.get("Statements", [])}
            for name in names - {None}:
                self.tables[(name, model.name)] += 1
        if model.name == "UpdateEndpointsBatch":
            for item in json.loads(params["body"])["Item"]:
                for name, values in item["User"]["UserAttributes"].items():
                    self.sent[(item["User"]["UserId"], name, values[0])] += 1

    def _items(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        if "Items" in parsed:
            self.items_read += len(parsed["Items"])
            self.query_pages += model.name == "Query"
        if parsed.get("Item"):
            self.items_read += 1
        if model.name == "BatchGetItem":
            for items in parsed.get("Responses", {}).values():
                self.items_read += len(items)

    def count(self, service: str, operation: str | None = None) -> int:
        return sum(n for (s, o), n in self.operations.items() if s == service and operation in (None, o))

    def reset(self) -> None:
        self.operations.clear()
        self.tables.clear()
        self.sent.clear()
        self.items_read = self.query_pages = 0


RAW_EVENTS_BUCKET = "pia-raw-events-123456789012-us-east-1"
SCHEDULE_EVENT = Path(__file__).resolve().parents[2] / "events" / "evaluator-schedule.json"


class _Context:
    function_name = "pia-test"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:pia-test"
    aws_request_id = "00000000-0000-0000-0000-000000000000"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


@dataclass
class Stack:
    """The aggregator and evaluator handlers on moto with a raw events bucket, one clock and counting
    clients, as deployed (the same tables, the same environment)."""

    dynamodb: Any
    recorder: Any
    monkeypatch: Any
    clock: Clock = field(default_factory=Clock)
    calls: Calls = field(init=False)
    aggregator: Any = field(init=False)
    evaluator: Any = field(init=False)

    def __post_init__(self) -> None:
        from aggregator import app as aggregator_app
        from evaluator import app as evaluator_app

        self.calls = Calls(self.recorder)
        self._fast_transactions = one_backup_per_transaction()
        self._fast_transactions.__enter__()
        self.s3 = boto3.client("s3", region_name="us-east-1")
        self.s3.create_bucket(Bucket=RAW_EVENTS_BUCKET)
        self.monkeypatch.setenv("RAW_EVENTS_BUCKET", RAW_EVENTS_BUCKET)
        self.monkeypatch.setenv("RAW_EVENT_RETENTION_DAYS", "400")
        self.monkeypatch.setenv("TIMEZONE", "UTC")
        self.aggregator, self.evaluator = aggregator_app, evaluator_app
        wiring = Wiring(LocalClients("pia-test", base=self.calls), self.clock)
        self._saved = [app.container.rewire(wiring) for app in (aggregator_app, evaluator_app)]

    def restart(self) -> None:
        """New containers: every in-memory cache (rules, counters, rollups) starts empty."""
        self.aggregator.container.cold_start()
        self.evaluator.container.cold_start()

    def close(self) -> None:
        for app, saved in zip((self.aggregator, self.evaluator), self._saved, strict=True):
            app.container.rewire(saved)
        self._fast_transactions.__exit__(None, None, None)

    def set_zone(self, zone: str) -> None:
        self.monkeypatch.setenv("TIMEZONE", zone)
        self.restart()

    def publish(
        self, rows: list[dict[str, str]], activation: str, published_at: datetime | None = None
    ) -> Any:
        parsed = publish(self.dynamodb, rows, activation, published_at or self.clock.now)
        self.restart()
        return parsed

    def aggregate(self, docs: Sequence[dict[str, Any]], start: int, shard: int = 0) -> dict[str, Any]:
        response: dict[str, Any] = self.aggregator.lambda_handler(batch(docs, start, shard), _Context())
        return response

    def evaluate(self, at: datetime | None = None) -> dict[str, Any]:
        if at is not None:
            self.clock.now = at
        summary: dict[str, Any] = self.evaluator.lambda_handler(
            json.loads(SCHEDULE_EVENT.read_text()), _Context()
        )
        return summary

    def attributes(self) -> dict[str, dict[str, str]]:
        return {user: dict(values) for user, values in self.recorder.user_attributes.items()}

    def rollups(self) -> Any:
        from pia.timeseries.store import RollupStore
        from tests.conftest import TIMESERIES_TABLE

        return RollupStore(self.dynamodb, TIMESERIES_TABLE)
