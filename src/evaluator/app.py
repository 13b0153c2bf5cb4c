"""Scheduled evaluator: date and rolling-window rules over the daily rollups, only changes sent.

EventBridge invokes it on the EvaluatorSchedule (default hourly). pandas comes from the AWS SDK for
pandas layer; this is the only function that loads it.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from pia.aws.clients import SDK_CONFIG, AwsClients, ClientFactory
from pia.aws.wiring import Container, Wiring
from pia.rules.ruleset import RulesetTable
from pia.settings import EvaluatorSettings
from pia.targets.factory import build_targets
from pia.telemetry import logger, metrics, tracer
from pia.timeseries.athena_backfill import AthenaBackfill, PendingQueryTable
from pia.timeseries.backfill import BackfillEngine
from pia.timeseries.backfill_engine import ArchiveScan, LambdaLimit, SizedBackfill
from pia.timeseries.evaluator import Evaluator
from pia.timeseries.store import CoverageTable, RawEventArchive, RollupStore, SeenValuesTable

READ_TIMEOUT_SECONDS = 20
"""Longer than the other functions': one query reads a whole series' rollups."""


def _backfill(
    settings: EvaluatorSettings, archive: RawEventArchive, clients: ClientFactory
) -> BackfillEngine:
    """The in-Lambda scan up to the threshold, one Athena query above it. Local runs (moto has no
    Athena) set ``BACKFILL_QUERY_ENGINE=duckdb`` and get DuckDB in Athena's place, same SQL."""
    small = ArchiveScan(archive)
    large: BackfillEngine
    if settings.backfill_query_engine == "duckdb":
        from pia.timeseries.duckdb_backfill import DuckDbBackfill  # noqa: PLC0415 (not in the Lambda package)

        large = DuckDbBackfill(archive)
    elif settings.athena_workgroup and settings.glue_database and settings.backfill_results_bucket:
        large = AthenaBackfill(
            clients("athena"),
            clients("s3"),
            workgroup=settings.athena_workgroup,
            database=settings.glue_database,
            results_bucket=settings.backfill_results_bucket,
            ledger=PendingQueryTable(clients("dynamodb"), settings.timeseries_table),
        )
    else:
        return small
    return SizedBackfill(archive, small, large, LambdaLimit(objects=settings.backfill_lambda_max_objects))


def build(wiring: Wiring) -> Evaluator:
    settings = EvaluatorSettings.from_env()
    clients = wiring.clients
    dynamodb = clients("dynamodb")
    retention = settings.raw_event_retention_days
    archive = (
        RawEventArchive(clients("s3"), settings.raw_events_bucket) if settings.raw_events_bucket else None
    )
    return Evaluator(
        RulesetTable(dynamodb, settings.ruleset_table).current,
        RollupStore(dynamodb, settings.timeseries_table, retention_days=retention),
        CoverageTable(dynamodb, settings.timeseries_table),
        build_targets(settings.targets, clients),
        zone=settings.zone,
        retention_days=retention,
        archive=archive,
        backfill=_backfill(settings, archive, clients) if archive is not None else None,
        seen=SeenValuesTable(dynamodb, settings.timeseries_table, retention_days=retention),
    )


container = Container(build, Wiring(AwsClients(SDK_CONFIG.merge(Config(read_timeout=READ_TIMEOUT_SECONDS)))))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, object]:
    report = container.runtime().run(container.now())
    metrics.add_metric("DateRulesReady", MetricUnit.Count, report.ready)
    metrics.add_metric("DateRulesNotReady", MetricUnit.Count, report.not_ready)
    metrics.add_metric("ActionsSent", MetricUnit.Count, report.actions_sent)
    metrics.add_metric("ActionsDeferred", MetricUnit.Count, report.actions_deferred)
    metrics.add_metric("RollupsRead", MetricUnit.Count, report.rollups_read)
    if report.bad_archive_lines:
        logger.error("unreadable lines in the raw event archive", count=report.bad_archive_lines)
    for key, reason in report.failures.items():
        logger.error(
            "evaluator change not committed or not delivered; retried next run", item=key, reason=reason
        )
    summary = report.summary()
    logger.info("date rules evaluated", extra=summary)
    return summary
