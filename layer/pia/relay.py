"""Delivers outbox entries that the aggregator could not deliver itself.

The aggregator deletes each entry as soon as its target accepts it, so what is left here is what a
target refused, or what a crashed invocation never sent. Only entries older than the aggregator's
timeout are touched, so the relay never races an invocation that is still about to send them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pia.actions import Action, ActionTarget


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
    by_target: dict[str, list[Action]] = defaultdict(list)
    for action, target_name in entries:
        by_target[target_name].append(action)
    delivered: list[tuple[Action, str]] = []
    known = {t.name: t for t in targets}
    for name, actions in by_target.items():
        target = known.get(name)
        if target is None:
            report.unknown_target += len(actions)
            continue
        try:
            failed = target.send(actions).failed
        except Exception as exc:
            failed = {a.action_id: f"{type(exc).__name__}: {exc}" for a in actions}
        for action in actions:
            if action.action_id in failed:
                report.failed[f"{action.action_id}#{name}"] = failed[action.action_id]
            else:
                delivered.append((action, name))
    if delivered:
        outbox.clear_outbox(delivered)
    report.delivered = len(delivered)
    return report
