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
from pia.targets.relay import relay_outbox
from pia.telemetry import logger, metrics, tracer

SDK_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=3, read_timeout=10)


def _client(service: str, region_name: str | None = None) -> Any:
    return boto3.client(service, region_name=region_name, config=SDK_CONFIG)  # type: ignore[call-overload]


def _now() -> datetime:
    """The function's clock; local runs replace it, as they replace ``_client``."""
    return datetime.now(UTC)


@cache
def runtime() -> tuple[Settings, CounterStore, list[ActionTarget]]:
    settings = Settings.from_env()
    store = CounterStore(_client("dynamodb"), settings.aggregates_table)
    return settings, store, build_targets(settings, _client)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings, store, targets = runtime()
    report = relay_outbox(store, targets, int(_now().timestamp()), settings.outbox_min_age_seconds)
    metrics.add_metric("ActionsRelayed", MetricUnit.Count, report.delivered)
    metrics.add_metric("ActionsDeferred", MetricUnit.Count, len(report.failed))
    for key, reason in report.failed.items():
        logger.warning("action still undelivered", action=key, reason=reason)
    if report.unknown_target:
        logger.error("outbox entries for a target this stack no longer has", count=report.unknown_target)
    return {"pending": report.pending, "delivered": report.delivered, "failed": len(report.failed)}
