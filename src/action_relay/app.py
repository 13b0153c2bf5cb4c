"""Scheduled action relay: delivers what state items still owe (a target refused it, or the evaluator
published it), in bounded pages, and parks what a target keeps refusing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from pia.aws.legacy_outbox import LegacyOutbox
from pia.aws.wiring import Container, Wiring
from pia.core.actions import ActionTarget
from pia.core.state import CommitSettings
from pia.counting.store import CounterStore
from pia.settings import RelaySettings
from pia.targets.factory import build_targets
from pia.targets.relay import MAX_ITEMS_PER_RUN, RelayFailed, RelayReport, relay_due
from pia.telemetry import logger, metrics, tracer


@dataclass(frozen=True)
class Runtime:
    settings: RelaySettings
    tables: list[Any]
    targets: list[ActionTarget]
    commit: CommitSettings
    legacy: LegacyOutbox


def build(wiring: Wiring) -> Runtime:
    """The tables whose items may owe actions: counters, and rollups when date rules are deployed."""
    settings = RelaySettings.from_env()
    dynamodb = wiring.clients("dynamodb")
    counters = CounterStore(dynamodb, settings.aggregates_table)
    tables: list[Any] = [counters]
    if settings.timeseries_table:
        from pia.timeseries.store import RollupStore  # noqa: PLC0415 (only stacks with date rules)

        tables.append(RollupStore(dynamodb, settings.timeseries_table))
    legacy = LegacyOutbox(dynamodb, settings.aggregates_table, parking=counters)
    return Runtime(settings, tables, build_targets(settings.targets, wiring.clients), wiring.commit(), legacy)


container = Container(build)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    rt = container.runtime()
    now = int(rt.commit.clock().timestamp())
    report = RelayReport()
    if rt.legacy.partitions():
        # Outbox entries from before the upgrade first: they are older than anything the items owe.
        # A failure here is logged and retried next run, and never holds up what the items owe.
        try:
            legacy = relay_due(
                rt.legacy,
                rt.targets,
                now,
                rt.legacy.partitions(),
                max_items=MAX_ITEMS_PER_RUN // 4,
                settings=rt.commit,
            )
        except (RelayFailed, ClientError) as exc:
            logger.error("outbox entries from before the upgrade not drained this run", reason=str(exc))
        else:
            report.add(legacy)
            rt.legacy.run_done(now)
    for table in rt.tables:
        try:
            report.add(relay_due(table, rt.targets, now, table.partitions(), settings=rt.commit))
        except RelayFailed:
            # The run fails loudly (Lambda's Errors metric and its alarm); this metric says it was the
            # claim the table refused, and keeps the invocation's metrics from being empty.
            metrics.add_metric("RelayRunsFailed", MetricUnit.Count, 1)
            raise
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
