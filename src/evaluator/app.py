"""Scheduled evaluator: date and rolling-window rules over the daily rollups, only changes sent.

EventBridge invokes it on the EvaluatorSchedule (default hourly). pandas comes from the AWS SDK for
pandas layer; this is the only function that loads it.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from pia.aws.clients import SDK_CONFIG, AwsClients
from pia.aws.wiring import Container, Wiring
from pia.counting.store import CounterStore
from pia.rules.ruleset import RulesetTable
from pia.settings import EvaluatorSettings
from pia.targets.factory import build_targets
from pia.telemetry import logger, metrics, tracer
from pia.timeseries.evaluator import Evaluator
from pia.timeseries.store import CoverageTable, RawEventArchive, RollupStore, SeenValuesTable

READ_TIMEOUT_SECONDS = 20
"""Longer than the other functions': one query reads a whole series' rollups."""


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
        RollupStore(dynamodb, settings.timeseries_table, settings.aggregates_table, retention_days=retention),
        CoverageTable(dynamodb, settings.timeseries_table),
        CounterStore(dynamodb, settings.aggregates_table),
        build_targets(settings.targets, clients),
        zone=settings.zone,
        retention_days=retention,
        archive=archive,
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
