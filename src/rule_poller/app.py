"""Rule poller: the marketer's table (Honeycode, or a CSV/XLSX in S3) in, a new ruleset version out.

Runs on a schedule and, for the spreadsheet source, on every S3 upload under the rules prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from pia.aws.clients import AwsClients
from pia.aws.wiring import Container, Wiring
from pia.counting.store import CounterStore
from pia.rules.honeycode import HoneycodeTable, honeycode_client
from pia.rules.poller import Poller, PollOutcome, PollStatus
from pia.rules.ruleset import RulesetTable
from pia.rules.s3source import NoRuleFile, RuleBucket, S3RuleFile
from pia.rules.source import RuleSource, SourceFailure
from pia.rules.trigger import rule_file_to_read
from pia.settings import PollerSettings
from pia.telemetry import logger, metrics, tracer
from pia.timeseries.store import SeenValuesTable


@dataclass(frozen=True)
class Runtime:
    settings: PollerSettings
    poller: Poller
    bucket: RuleBucket | None
    honeycode: HoneycodeTable | None


def build(wiring: Wiring) -> Runtime:
    settings = PollerSettings.from_env()
    clients = wiring.clients
    dynamodb = clients("dynamodb")
    bucket = (
        RuleBucket(clients("s3"), settings.rules_bucket, settings.rules_prefix)
        if settings.rules_bucket
        else None
    )
    honeycode = None
    if settings.source == "honeycode":
        honeycode = HoneycodeTable(
            clients("honeycode"), settings.honeycode_workbook_id, settings.honeycode_table_id, reports=bucket
        )
    poller = Poller(
        RulesetTable(dynamodb, settings.ruleset_table),
        CounterStore(dynamodb, settings.aggregates_table),
        clock=wiring.clock,
        grace=settings.grace,
        seen=SeenValuesTable(dynamodb, settings.timeseries_table) if settings.timeseries_table else None,
        zone=settings.zone,
        rollup_partitions=settings.rollup_partitions,
    )
    return Runtime(settings, poller, bucket, honeycode)


container = Container(
    build, Wiring(AwsClients(shipped={"honeycode": lambda config: honeycode_client(config=config)}))
)


def source_for(event: dict[str, Any], rt: Runtime) -> RuleSource | None:
    """Honeycode is always read whole; for rule files, the trigger decides (:mod:`pia.rules.trigger`)."""
    if rt.honeycode is not None:
        return rt.honeycode
    assert rt.bucket is not None, "settings require RULES_BUCKET for the spreadsheet source"
    decision = rule_file_to_read(event, rt.bucket)
    for upload in decision.ignored:
        logger.info("S3 notification ignored: not a rule file", bucket=upload.bucket, key=upload.key)
    if not decision.read:
        return None
    if decision.superseded is not None:
        logger.info(
            "a newer rule file exists; reading it instead", uploaded=decision.superseded, newest=decision.key
        )
    return S3RuleFile(rt.bucket, decision.key) if decision.key is not None else NoRuleFile(rt.bucket)


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
    rt = container.runtime()
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
