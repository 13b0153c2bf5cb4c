"""Scheduled action relay: retries outbox entries a target refused or a crash left unsent."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from pia.core.actions import ActionTarget
from pia.counting.store import CounterStore
from pia.settings import Settings
from pia.targets.factory import build_targets
from pia.targets.relay import RelayReport, relay_due
from pia.telemetry import logger, metrics, tracer

SDK_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=3, read_timeout=10)


def _client(service: str, region_name: str | None = None) -> Any:
    return boto3.client(service, region_name=region_name, config=SDK_CONFIG)  # type: ignore[call-overload]


def _now() -> datetime:
    """The function's clock; local runs replace it, as they replace ``_client``."""
    return datetime.now(UTC)


@cache
def runtime() -> tuple[Settings, list[Any], list[ActionTarget]]:
    """The tables whose items may owe actions: counters, and rollups when date rules are deployed."""
    settings = Settings.from_env()
    dynamodb = _client("dynamodb")
    tables: list[Any] = [CounterStore(dynamodb, settings.aggregates_table)]
    if settings.timeseries_table:
        from pia.timeseries.store import RollupStore  # noqa: PLC0415 (only stacks with date rules)

        tables.append(RollupStore(dynamodb, settings.timeseries_table))
    return settings, tables, build_targets(settings, _client)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    _, tables, targets = runtime()
    now = int(_now().timestamp())
    report = RelayReport()
    for table in tables:
        report.add(relay_due(table, targets, now, table.partitions()))
    metrics.add_metric("ActionsRelayed", MetricUnit.Count, report.delivered)
    metrics.add_metric("ActionsDeferred", MetricUnit.Count, len(report.failed))
    metrics.add_metric("ActionsParked", MetricUnit.Count, len(report.parked))
    for key, reason in report.failed.items():
        logger.warning("action still undelivered", action=key, reason=reason)
    for parked in report.parked:
        logger.error(
            "action parked after repeated refusals",
            action=parked.action.action_id,
            target=parked.target,
            attempts=parked.attempts,
            reason=parked.reason,
        )
    return {"pending": report.pending, "delivered": report.delivered, "failed": len(report.failed)}
