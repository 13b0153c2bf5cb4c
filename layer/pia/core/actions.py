"""What the engine tells the outside world, and the contract every destination implements.

An action has a deterministic id derived from the stream position that caused it, so the outbox,
every retry and every destination agree on which crossing it is, and a destination that can dedupe
(an EventBridge consumer, say) can do so on that id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

READY = "ready"
NOT_READY = "not-ready"


class ActionKind(StrEnum):
    SET_ATTRIBUTE = "set_attribute"
    FIRE_EVENT = "fire_event"


@dataclass(frozen=True)
class Action:
    action_id: str
    kind: ActionKind
    user_id: str
    rule_id: str
    output_name: str
    value: str | None
    endpoint_ids: tuple[str, ...]
    count: int
    total: Decimal
    occurred_at: datetime
    lane: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "action_id": self.action_id,
            "kind": self.kind.value,
            "user_id": self.user_id,
            "rule_id": self.rule_id,
            "output_name": self.output_name,
            "value": self.value,
            "endpoint_ids": list(self.endpoint_ids),
            "count": self.count,
            "total": str(self.total),
            "occurred_at": self.occurred_at.isoformat(),
            "lane": self.lane,
        }

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> Action:
        return Action(
            action_id=data["action_id"],
            kind=ActionKind(data["kind"]),
            user_id=data["user_id"],
            rule_id=data["rule_id"],
            output_name=data["output_name"],
            value=data.get("value"),
            endpoint_ids=tuple(data.get("endpoint_ids", ())),
            count=int(data["count"]),
            total=Decimal(data["total"]),
            occurred_at=datetime.fromisoformat(data["occurred_at"]),
            lane=data.get("lane", ""),
        )

    def dumps(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True)


def action_id_for(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class SendResult:
    """One target's answer to one ``send``, keyed by action id; an action missing from ``failed`` was
    accepted. :class:`pia.core.delivery.Delivery` gathers these over every target of a batch."""

    failed: Mapping[str, str] = field(default_factory=dict)


class ActionTarget(Protocol):
    """A destination for actions (Pinpoint, EventBridge, Customer Profiles, a local recorder)."""

    name: str

    def send(self, actions: Sequence[Action]) -> SendResult: ...
