"""The evaluator: date and rolling-window rules over the daily rollups, only changes sent.

With ``EvaluatorPath`` step-functions the evaluator state machine calls it once to plan a run, once
per unit of rollups (and per follow-up), and once to finish; with single-invocation, the schedule
invokes it and it does the whole run in turn. pandas comes from the AWS SDK for pandas layer; this is
the only function that loads it.
"""

from __future__ import annotations

from dataclasses import dataclass
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
from pia.timeseries.archive import RawEventArchive
from pia.timeseries.athena_backfill import AthenaBackfill, PendingQueryTable
from pia.timeseries.backfill import BackfillEngine
from pia.timeseries.backfill_engine import ArchiveScan, LambdaLimit, SizedBackfill
from pia.timeseries.backfill_results import BackfillResults, S3Objects
from pia.timeseries.evaluator import EvaluationReport, Evaluator
from pia.timeseries.run_files import RunFiles, readiness_pages, summary_within_payload, within_payload
from pia.timeseries.run_requests import (
    FinishRequest,
    PlanRequest,
    RequestError,
    UnitRequest,
    WholeRun,
    parse_request,
)
from pia.timeseries.store import CoverageTable, RollupStore, SeenValuesTable

READ_TIMEOUT_SECONDS = 20
"""Longer than the other functions': a unit reads up to its bound of rollups in one call chain."""


@dataclass(frozen=True)
class EvaluatorRuntime:
    evaluator: Evaluator
    files: RunFiles | None
    """Where a fanned-out run keeps its plan and results (None: no bucket configured)."""
    max_concurrency: int


def _backfill(
    settings: EvaluatorSettings, archive: RawEventArchive, clients: ClientFactory, dynamodb: Any
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
            ledger=PendingQueryTable(dynamodb, settings.timeseries_table),
        )
    else:
        return small
    return SizedBackfill(archive, small, large, LambdaLimit(objects=settings.backfill_lambda_max_objects))


def build(wiring: Wiring) -> EvaluatorRuntime:
    settings = EvaluatorSettings.from_env()
    clients = wiring.clients
    dynamodb = clients("dynamodb")
    retention = settings.raw_event_retention_days
    archive = (
        RawEventArchive(clients("s3"), settings.raw_events_bucket) if settings.raw_events_bucket else None
    )
    evaluator = Evaluator(
        RulesetTable(dynamodb, settings.ruleset_table).current,
        RollupStore(dynamodb, settings.timeseries_table, retention_days=retention),
        CoverageTable(dynamodb, settings.timeseries_table),
        build_targets(settings.targets, clients),
        zone=settings.zone,
        retention_days=retention,
        archive=archive,
        backfill=_backfill(settings, archive, clients, dynamodb) if archive is not None else None,
        seen=SeenValuesTable(dynamodb, settings.timeseries_table, retention_days=retention),
        settings=wiring.commit(),
        unit_limit=settings.unit_rollups,
        results=(
            BackfillResults(S3Objects(clients("s3"), settings.backfill_results_bucket))
            if settings.backfill_results_bucket
            else None
        ),
    )
    bucket = settings.backfill_results_bucket
    files = RunFiles(clients("s3"), bucket) if bucket else None
    return EvaluatorRuntime(evaluator, files, settings.max_concurrency)


container = Container(build, Wiring(AwsClients(SDK_CONFIG.merge(Config(read_timeout=READ_TIMEOUT_SECONDS)))))


def _log_failures(report: EvaluationReport) -> None:
    if report.bad_archive_lines:
        logger.error("unreadable lines in the raw event archive", count=report.bad_archive_lines)
    for key, reason in report.failures.items():
        logger.error(
            "evaluator change not committed or not delivered; retried next run", item=key, reason=reason
        )


def _publish(report: EvaluationReport) -> dict[str, object]:
    """The run's metrics and summary line: once per run, from the whole run's report."""
    metrics.add_metric("DateRulesReady", MetricUnit.Count, report.ready)
    metrics.add_metric("DateRulesNotReady", MetricUnit.Count, report.not_ready)
    metrics.add_metric("ActionsSent", MetricUnit.Count, report.actions_sent)
    metrics.add_metric("ActionsDeferred", MetricUnit.Count, report.actions_deferred)
    metrics.add_metric("RollupsRead", MetricUnit.Count, report.rollups_read)
    _log_failures(report)
    summary = report.summary()
    logger.info("date rules evaluated", extra=summary_within_payload(summary))
    for page in readiness_pages(summary)[1:]:
        logger.info("date rules evaluated: more readiness", readiness=page)
    return summary


def _plan(runtime: EvaluatorRuntime, request: PlanRequest) -> dict[str, object]:
    if runtime.files is None:
        raise RequestError("mode 'plan' needs BACKFILL_RESULTS_BUCKET: the run's files are kept there")
    plan = runtime.evaluator.plan(container.now())
    planned = runtime.files.write_plan(request.execution, plan, max_concurrency=runtime.max_concurrency)
    logger.info("evaluator run planned", execution=request.execution, units=planned.unit_count)
    metrics.add_metric("UnitsPlanned", MetricUnit.Count, planned.unit_count)
    return planned.to_json()


def _unit(runtime: EvaluatorRuntime, request: UnitRequest) -> dict[str, object]:
    page = runtime.evaluator.run_unit(request.unit, container.now())
    _log_failures(page)
    metrics.add_metric("UnitRollupsRead", MetricUnit.Count, page.rollups_read)
    more = page.more
    report = request.so_far or EvaluationReport()
    report.add(page)
    return {"report": within_payload(report).to_json(), "more": more.to_json() if more is not None else None}


def _finish(runtime: EvaluatorRuntime, request: FinishRequest) -> dict[str, object]:
    if runtime.files is None:
        raise RequestError("mode 'finish' needs BACKFILL_RESULTS_BUCKET: the run's files are kept there")
    plan = runtime.files.read_plan(request.plan)
    results = runtime.files.unit_results(request.results)
    for unit, reason in results.failed.items():
        logger.error(
            "evaluator unit failed after its retries; evaluated again next run", unit=unit, reason=reason
        )
    report = runtime.evaluator.finish(plan, results.reports, container.now())
    report.failures.update(results.failed)
    return {
        **summary_within_payload(_publish(report)),
        "units": report.units,
        "most_unit_rollups": report.most_unit_rollups,
        "failed_units": len(results.failed),
    }


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, object]:
    request = parse_request(event)
    runtime = container.runtime()
    if isinstance(request, PlanRequest):
        return _plan(runtime, request)
    if isinstance(request, UnitRequest):
        return _unit(runtime, request)
    if isinstance(request, FinishRequest):
        return _finish(runtime, request)
    assert isinstance(request, WholeRun)
    return _publish(runtime.evaluator.run(container.now()))
