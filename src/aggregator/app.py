"""Kinesis-triggered aggregator: Pinpoint (or generic) event records in, counters and actions out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from pia.aws.wiring import Container, Wiring
from pia.core.actions import ActionTarget
from pia.core.events import RecordRejected, Skipped
from pia.core.state import CommitSettings
from pia.counting.aggregator import Aggregator, ExtensionOutcome, InboundRecord
from pia.counting.counters import Position
from pia.counting.processor import Decoded, decode_record, process_batch
from pia.counting.store import CounterStore
from pia.rules.ruleset import Ruleset, RulesetCache, RulesetTable
from pia.settings import AggregatorSettings
from pia.targets.factory import build_targets
from pia.telemetry import logger, metrics, tracer


@dataclass(frozen=True)
class Runtime:
    settings: AggregatorSettings
    aggregator: Aggregator


class TimeSeriesOnDemand:
    """The raw event archive and the time-series path, each imported and built on the first batch that
    needs it: the archive while a bucket is configured, the rollups only once a date rule is live. A
    stack whose rules are all aggregate rules never loads the rollups, the due index or the backfill
    code, archive or not. It shares the container's DynamoDB client: a second one would cost the cold
    start some 35 ms of CPU."""

    def __init__(
        self,
        settings: AggregatorSettings,
        clients: Callable[[str], Any],
        dynamodb: Any,
        targets: Sequence[ActionTarget],
        commit: CommitSettings,
    ) -> None:
        self._settings = settings
        self._clients = clients
        self._dynamodb = dynamodb
        self._targets = targets
        self._commit = commit
        self._archive: Any = None
        self._path: Any = None

    def process(self, records: Sequence[InboundRecord], ruleset: Ruleset, now: datetime) -> ExtensionOutcome:
        settings = self._settings
        if settings.raw_events_bucket:
            from pia.timeseries.archive import RawEventArchive, archive_batch  # noqa: PLC0415 (cold start)

            if self._archive is None:
                self._archive = RawEventArchive(self._clients("s3"), settings.raw_events_bucket)
            archived = archive_batch(self._archive, records, now)
            if archived.failed:
                return archived
        if self._path is None:
            if not (settings.timeseries_table and ruleset.date_rules):
                return ExtensionOutcome()
            from pia.timeseries.realtime import TimeSeriesPath  # noqa: PLC0415 (cold start: only when needed)
            from pia.timeseries.store import RollupStore  # noqa: PLC0415

            self._path = TimeSeriesPath(
                None,
                RollupStore(
                    self._dynamodb,
                    settings.timeseries_table,
                    retention_days=settings.raw_event_retention_days,
                ),
                self._targets,
                zone=settings.zone,
                retention_days=settings.raw_event_retention_days,
                settings=self._commit,
            )
        outcome: ExtensionOutcome = self._path.process(records, ruleset, now)
        return outcome


def build(wiring: Wiring) -> Runtime:
    settings = AggregatorSettings.from_env()
    clients = wiring.clients
    dynamodb = clients("dynamodb")
    rulesets = RulesetCache(
        RulesetTable(dynamodb, settings.ruleset_table).current, settings.ruleset_ttl_seconds
    )
    targets = build_targets(settings.targets, clients)
    commit = wiring.commit(settings.lane_retention_seconds, memory_mb=settings.memory_mb)
    aggregator = Aggregator(
        CounterStore(dynamodb, settings.aggregates_table),
        rulesets.get,
        targets,
        settings=commit,
        extensions=[TimeSeriesOnDemand(settings, clients, dynamodb, targets, commit)],
        lanes_recur=settings.parallelization_factor == 1,
        zone=settings.zone,
    )
    return Runtime(settings, aggregator)


container = Container(build)


def commit(records: Sequence[InboundRecord]) -> dict[Position, str]:
    report = container.runtime().aggregator.process(records)
    metrics.add_metric("EventsCounted", MetricUnit.Count, report.applied)
    metrics.add_metric("DuplicatesIgnored", MetricUnit.Count, report.duplicates)
    metrics.add_metric("RulesMet", MetricUnit.Count, len(report.actions))
    metrics.add_metric("ActionsSent", MetricUnit.Count, report.actions_sent)
    metrics.add_metric("ActionsDeferred", MetricUnit.Count, report.actions_deferred)
    if report.settled:
        metrics.add_metric("SettledEventsSkipped", MetricUnit.Count, report.settled)
    if report.actions_parked:
        metrics.add_metric("ActionsParked", MetricUnit.Count, report.actions_parked)
    if report.ambiguous_metric:
        metrics.add_metric("AmbiguousMetric", MetricUnit.Count, report.ambiguous_metric)
        logger.warning(
            "events with several metrics and a rule without MetricName", count=report.ambiguous_metric
        )
    for key, reason in report.failure_reasons.items():
        logger.error("batch item not committed", item=key, reason=reason)
    for key, reason in report.deferred.items():
        logger.warning("action committed, target refused it: the relay retries it", item=key, reason=reason)
    return {p: report.failure_reasons.get(p.token, "not committed") for p in report.failed}


def handle_record(record: KinesisStreamRecord) -> Decoded:
    settings = container.runtime().settings
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
    # Per invocation, before anything can fail: the batch sizes the batching window yields, and an
    # invocation that dies mid-batch still publishes a metric.
    metrics.add_metric("RecordsReceived", MetricUnit.Count, len(event.get("Records", ())))
    return dict(process_batch(event, handle_record, commit, context))
