"""Delivers outbox entries that the aggregator could not deliver itself.

The aggregator deletes each entry as soon as its target accepts it, so what is left here is what a
target refused, or what a crashed invocation never sent. Only entries older than the aggregator's
timeout are touched, so the relay never races an invocation that is still about to send them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pia.core.actions import Action, ActionTarget
from pia.core.delivery import deliver


class OutboxPort(Protocol):
    def pending_outbox(self, older_than: int) -> list[tuple[Action, str]]: ...

    def clear_outbox(self, entries: Sequence[tuple[Action, str]]) -> None: ...

    def claim_outbox(self, entries: Sequence[tuple[Action, str]], now: int) -> list[tuple[Action, str]]: ...


@dataclass
class RelayReport:
    pending: int = 0
    delivered: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    unknown_target: int = 0


def relay_outbox(
    outbox: OutboxPort, targets: Sequence[ActionTarget], now: int, min_age_seconds: int
) -> RelayReport:
    entries = outbox.pending_outbox(older_than=now - min_age_seconds)
    report = RelayReport(pending=len(entries))
    entries = outbox.claim_outbox(entries, now)
    known = {t.name for t in targets}
    report.unknown_target = sum(1 for _, name in entries if name not in known)
    delivery = deliver([(action, name) for action, name in entries if name in known], targets)
    report.failed = {f"{action_id}#{name}": reason for (action_id, name), reason in delivery.failed.items()}
    delivered = delivery.delivered
    if delivered:
        outbox.clear_outbox(delivered)
    report.delivered = len(delivered)
    return report
