"""Rule poller: the marketer's table (Honeycode, or a CSV/XLSX in S3) in, a new ruleset version out.

Runs on a schedule and, for the spreadsheet source, on every S3 upload under the rules prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import unquote_plus

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import S3Event
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from pia.counting.store import CounterStore
from pia.rules.honeycode import HoneycodeTable, honeycode_client
from pia.rules.poller import Poller, PollerSettings, PollOutcome, PollStatus
from pia.rules.ruleset import RulesetTable
from pia.rules.s3source import NoRuleFile, RuleBucket, S3RuleFile, is_rule_key
from pia.rules.source import RuleSource, SourceFailure
from pia.telemetry import logger, metrics, tracer
from pia.timeseries.store import SeenValuesTable

SDK_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=3, read_timeout=10)


def _client(service: str, region_name: str | None = None) -> Any:
    """Honeycode's model ships with the layer and its client is pinned to us-west-2."""
    if service == "honeycode":
        return honeycode_client(config=SDK_CONFIG)
    return boto3.client(service, region_name=region_name, config=SDK_CONFIG)  # type: ignore[call-overload]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Runtime:
    settings: PollerSettings
    poller: Poller
    bucket: RuleBucket | None
    honeycode: HoneycodeTable | None


@cache
def runtime() -> Runtime:
    settings = PollerSettings.from_env()
    dynamodb = _client("dynamodb")
    bucket = (
        RuleBucket(_client("s3"), settings.rules_bucket, settings.rules_prefix)
        if settings.rules_bucket
        else None
    )
    honeycode = None
    if settings.source == "honeycode":
        honeycode = HoneycodeTable(
            _client("honeycode"), settings.honeycode_workbook_id, settings.honeycode_table_id, reports=bucket
        )
    elif bucket is None:
        raise ValueError("RULES_BUCKET is required for the spreadsheet source")
    poller = Poller(
        RulesetTable(dynamodb, settings.ruleset_table),
        CounterStore(dynamodb, settings.aggregates_table),
        clock=_now,
        grace=settings.grace,
        seen=SeenValuesTable(dynamodb, settings.timeseries_table) if settings.timeseries_table else None,
        timezone=settings.timezone,
    )
    return Runtime(settings, poller, bucket, honeycode)


def _uploaded(event: dict[str, Any], bucket: RuleBucket) -> tuple[str, datetime] | None:
    """The newest rule file this S3 notification announces, with its event time."""
    newest: tuple[str, datetime] | None = None
    for record in S3Event(event).records:
        key = unquote_plus(record.s3.get_object.key)
        if record.s3.bucket.name != bucket.bucket or not is_rule_key(key, bucket.prefix):
            logger.info("S3 notification ignored: not a rule file", bucket=record.s3.bucket.name, key=key)
            continue
        when = datetime.fromisoformat(record.event_time.replace("Z", "+00:00"))
        if newest is None or when > newest[1]:
            newest = (key, when)
    return newest


def source_for(event: dict[str, Any], rt: Runtime) -> RuleSource | None:
    """Honeycode is always read whole. An upload reads the uploaded file, unless a newer rule file
    has been saved since (a late notification must never bring back older rules); the schedule
    reads the newest rule file under the prefix."""
    if rt.honeycode is not None:
        return rt.honeycode
    assert rt.bucket is not None
    if event.get("Records"):
        uploaded = _uploaded(event, rt.bucket)
        if uploaded is None:
            return None
        key, when = uploaded
        newest = rt.bucket.newest()
        if newest is not None and newest.key != key and newest.last_modified > when:
            logger.info("a newer rule file exists; reading it instead", uploaded=key, newest=newest.key)
            key = newest.key
        return S3RuleFile(rt.bucket, key)
    newest = rt.bucket.newest()
    return S3RuleFile(rt.bucket, newest.key) if newest is not None else NoRuleFile(rt.bucket)


def _record(outcome: PollOutcome) -> None:
    metrics.add_metric("RulesLive", MetricUnit.Count, outcome.rules_live)
    metrics.add_metric("RuleRowErrors", MetricUnit.Count, outcome.error_rows)
    metrics.add_metric("RuleRowWarnings", MetricUnit.Count, outcome.warnings)
    metrics.add_metric("RulesetPublished", MetricUnit.Count, int(outcome.status is PollStatus.PUBLISHED))
    metrics.add_metric("RuleCountersDeleted", MetricUnit.Count, sum(outcome.deleted.values()))
    if outcome.deletion_failures:
        metrics.add_metric("RuleCounterDeletionFailed", MetricUnit.Count, len(outcome.deletion_failures))
        logger.error(
            "removed rule counters not deleted; retried next run", failures=outcome.deletion_failures
        )
    if outcome.report is not None:
        for line in outcome.report.lines:
            if line.message:
                logger.info("rule row", row=line.row, status=line.status.value, detail=line.message)
    logger.info("rules polled", extra=outcome.summary())


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, object]:
    rt = runtime()
    source = source_for(event, rt)
    if source is None:
        metrics.add_metric("RuleNotificationsIgnored", MetricUnit.Count, 1)
        return {"status": "ignored"}
    try:
        outcome = rt.poller.run(source)
    except SourceFailure as exc:
        metrics.add_metric("RuleSourceFailures", MetricUnit.Count, 1)
        logger.error(
            "rule source unreadable; the last good ruleset stays live",
            source=source.description,
            error=str(exc),
        )
        raise
    _record(outcome)
    return outcome.summary()
