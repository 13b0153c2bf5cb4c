"""Kinesis-triggered aggregator: Pinpoint (or generic) event records in, counters and actions out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from pia.core.events import RecordRejected, Skipped
from pia.counting.aggregator import Aggregator, InboundRecord
from pia.counting.counters import Position
from pia.counting.processor import Decoded, decode_record, process_batch
from pia.counting.store import CounterStore
from pia.rules.ruleset import RulesetCache, RulesetTable
from pia.settings import Settings
from pia.targets.factory import build_targets
from pia.telemetry import logger, metrics, tracer
from pia.timeseries.realtime import TimeSeriesPath
from pia.timeseries.rollups import load_zone
from pia.timeseries.store import RawEventArchive, RollupStore

SDK_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=3, read_timeout=10)


def _client(service: str, region_name: str | None = None) -> Any:
    return boto3.client(service, region_name=region_name, config=SDK_CONFIG)  # type: ignore[call-overload]


def _now() -> datetime:
    """The function's clock; local runs (``pia replay --now``) replace it, as they replace ``_client``."""
    return datetime.now(UTC)


@cache
def runtime() -> tuple[Settings, Aggregator]:
    settings = Settings.from_env()
    dynamodb = _client("dynamodb")
    rulesets = RulesetCache(
        RulesetTable(dynamodb, settings.ruleset_table).current, settings.ruleset_ttl_seconds
    )
    targets = build_targets(settings, _client)
    retention = settings.raw_event_retention_days
    timeseries = TimeSeriesPath(
        RawEventArchive(_client("s3"), settings.raw_events_bucket) if settings.raw_events_bucket else None,
        RollupStore(dynamodb, settings.timeseries_table, settings.aggregates_table, retention_days=retention)
        if settings.timeseries_table
        else None,
        [t.name for t in targets],
        zone=load_zone(settings.timezone),
        retention_days=retention,
        lane_retention_seconds=settings.lane_retention_seconds,
    )
    aggregator = Aggregator(
        CounterStore(dynamodb, settings.aggregates_table),
        rulesets.get,
        targets,
        clock=_now,
        lane_retention_seconds=settings.lane_retention_seconds,
        extensions=[timeseries],
    )
    return settings, aggregator


def commit(records: Sequence[InboundRecord]) -> dict[Position, str]:
    _, aggregator = runtime()
    report = aggregator.process(records)
    metrics.add_metric("EventsCounted", MetricUnit.Count, report.applied)
    metrics.add_metric("DuplicatesIgnored", MetricUnit.Count, report.duplicates)
    metrics.add_metric("RulesMet", MetricUnit.Count, len(report.actions))
    metrics.add_metric("ActionsSent", MetricUnit.Count, report.actions_sent)
    metrics.add_metric("ActionsDeferred", MetricUnit.Count, report.actions_deferred)
    if report.ambiguous_metric:
        metrics.add_metric("AmbiguousMetric", MetricUnit.Count, report.ambiguous_metric)
        logger.warning(
            "events with several metrics and a rule without MetricName", count=report.ambiguous_metric
        )
    for key, reason in report.failure_reasons.items():
        logger.error("batch item not committed", item=key, reason=reason)
    return {p: report.failure_reasons.get(p.token, "not committed") for p in report.failed}


def handle_record(record: KinesisStreamRecord) -> Decoded:
    settings, _ = runtime()
    decoded = decode_record(record, settings.parallelization_factor, settings.field_mapping)
    if isinstance(decoded, RecordRejected):
        metrics.add_metric("RecordsRejected", MetricUnit.Count, 1)
        logger.error(
            "record rejected",
            field=decoded.field,
            reason=decoded.reason,
            shard=record.event_id.split(":", 1)[0],
            sequence_number=record.kinesis.sequence_number,
        )
    elif isinstance(decoded, Skipped):
        metrics.add_metric(f"Skipped_{decoded.reason.value}", MetricUnit.Count, 1)
        if decoded.reason.value == "no_user":
            logger.info("event skipped: no user id", event_type=decoded.event_type)
    return decoded


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return dict(process_batch(event, handle_record, commit, context))
