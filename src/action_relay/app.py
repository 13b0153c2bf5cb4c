"""Scheduled action relay: retries outbox entries a target refused or a crash left unsent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from pia.aws.wiring import Clock, Container, Wiring
from pia.core.actions import ActionTarget
from pia.counting.store import CounterStore
from pia.settings import RelaySettings
from pia.targets.factory import build_targets
from pia.targets.relay import relay_outbox
from pia.telemetry import logger, metrics, tracer


@dataclass(frozen=True)
class Runtime:
    settings: RelaySettings
    store: CounterStore
    targets: list[ActionTarget]
    clock: Clock


def build(wiring: Wiring) -> Runtime:
    settings = RelaySettings.from_env()
    store = CounterStore(wiring.clients("dynamodb"), settings.aggregates_table)
    return Runtime(settings, store, build_targets(settings.targets, wiring.clients), wiring.clock)


container = Container(build)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    rt = container.runtime()
    now = int(rt.clock().timestamp())
    report = relay_outbox(rt.store, rt.targets, now, rt.settings.outbox_min_age_seconds)
    metrics.add_metric("ActionsRelayed", MetricUnit.Count, report.delivered)
    metrics.add_metric("ActionsDeferred", MetricUnit.Count, len(report.failed))
    for key, reason in report.failed.items():
        logger.warning("action still undelivered", action=key, reason=reason)
    if report.unknown_target:
        logger.error("outbox entries for a target this stack no longer has", count=report.unknown_target)
    return {"pending": report.pending, "delivered": report.delivered, "failed": len(report.failed)}
