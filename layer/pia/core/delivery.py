"""Sending committed outbox entries to their targets, each target's share in one batched call.

An entry counts as delivered only when its target accepted it; the caller then deletes it from the
outbox. Whatever a target refuses stays there for a later attempt, with its reason. The aggregator,
the relay and the evaluator all send this way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from pia.core.actions import Action, ActionTarget


class OutboxEntry(NamedTuple):
    """One action owed to one target."""

    action: Action
    target: str


@dataclass
class Delivery:
    """What :func:`deliver` achieved over every target: the entries accepted, and the reason for each
    one refused, keyed by action id and target (one target's own answer is a ``SendResult``)."""

    delivered: list[OutboxEntry] = field(default_factory=list)
    failed: dict[tuple[str, str], str] = field(default_factory=dict)
    """(action id, target name) -> reason."""


def deliver(entries: Sequence[OutboxEntry], targets: Sequence[ActionTarget]) -> Delivery:
    by_target: dict[str, list[Action]] = {}
    for action, target_name in entries:
        by_target.setdefault(target_name, []).append(action)
    known = {t.name: t for t in targets}
    result = Delivery()
    for name, actions in by_target.items():
        target = known.get(name)
        if target is None:
            result.failed.update({(a.action_id, name): "target is not configured" for a in actions})
            continue
        try:
            failed = target.send(actions).failed
        except Exception as exc:
            failed = {a.action_id: f"{type(exc).__name__}: {exc}" for a in actions}
        for action in actions:
            if action.action_id in failed:
                result.failed[(action.action_id, name)] = failed[action.action_id]
            else:
                result.delivered.append(OutboxEntry(action, name))
    return result
