"""Amazon EventBridge as an action target: one event per action, for teams leaving Pinpoint.

Whatever consumes the bus (a rule to Step Functions, SQS, Lambda, an API destination) decides what a
crossing means, so the event carries everything the engine knows about it. The action id rides in
the detail: the outbox may resend an action after a crash, and a consumer that must act once can
deduplicate on it.

PutEvents accepts 10 entries and 256 KB a call, and answers 200 even when some entries failed: the
failures are in ``Entries[i].ErrorCode``. Only those entries are retried, and only for the codes
AWS documents as transient; whole-call errors are left to botocore's own retry policy.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from pia.core.actions import NOT_READY, READY, Action, ActionKind, SendResult

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_events.type_defs import PutEventsRequestEntryTypeDef

SOURCE = "pinpoint-incremental-analytics"
MAX_ENTRIES_PER_CALL = 10
MAX_REQUEST_BYTES = 256 * 1024
TIME_FIELD_BYTES = 14
TRANSIENT_ENTRY_ERRORS = frozenset({"ThrottlingException", "InternalFailure"})


class DetailType(StrEnum):
    """The ``detail-type`` of each kind of change; EventBridge rules match on these strings."""

    RULE_MET = "Rule Met"
    RULE_NO_LONGER_MET = "Rule No Longer Met"
    RESET_EVENT_FIRED = "Reset Event Fired"
    VALUE_CHANGED = "Rule Value Changed"
    """An ``Output = value`` rule's aggregate changed: ``value`` holds the new value."""


def detail_type(action: Action) -> DetailType:
    if action.kind is ActionKind.FIRE_EVENT:
        return DetailType.RESET_EVENT_FIRED
    if action.value == NOT_READY:
        return DetailType.RULE_NO_LONGER_MET
    if action.value != READY:
        return DetailType.VALUE_CHANGED
    return DetailType.RULE_MET


def detail(action: Action) -> dict[str, Any]:
    """The sum is a string: it is an exact decimal, and JSON numbers become doubles in most consumers."""
    return {
        "action_id": action.action_id,
        "user_id": action.user_id,
        "rule_id": action.rule_id,
        "output_name": action.output_name,
        "value": action.value,
        "count": action.count,
        "sum": str(action.total),
        "occurred_at": action.occurred_at.isoformat(),
    }


def entry_size(entry: PutEventsRequestEntryTypeDef) -> int:
    """EventBridge's own formula for how much of the 256 KB request an entry uses."""
    size = TIME_FIELD_BYTES if "Time" in entry else 0
    size += len(entry["Source"].encode()) + len(entry["DetailType"].encode()) + len(entry["Detail"].encode())
    size += sum(len(resource.encode()) for resource in entry.get("Resources", []))
    return size


class EventBridgeTarget:
    name = "eventbridge"

    def __init__(
        self,
        client: EventBridgeClient,
        event_bus_name: str = "default",
        *,
        max_attempts: int = 5,
        base_delay: float = 0.1,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._bus = event_bus_name
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._max_request_bytes = max_request_bytes
        self._sleep = sleep

    def entry(self, action: Action) -> PutEventsRequestEntryTypeDef:
        return {
            "Source": SOURCE,
            "DetailType": detail_type(action).value,
            "Detail": json.dumps(detail(action), separators=(",", ":"), sort_keys=True),
            "EventBusName": self._bus,
            "Time": action.occurred_at,
            "Resources": [],
        }

    def send(self, actions: Sequence[Action]) -> SendResult:
        failed: dict[str, str] = {}
        for chunk in self._chunks(actions, failed):
            self._put(chunk, failed)
        return SendResult(failed)

    def _chunks(
        self, actions: Sequence[Action], failed: dict[str, str]
    ) -> Iterator[list[tuple[Action, PutEventsRequestEntryTypeDef]]]:
        chunk: list[tuple[Action, PutEventsRequestEntryTypeDef]] = []
        chunk_bytes = 0
        for action in actions:
            entry = self.entry(action)
            size = entry_size(entry)
            if size > self._max_request_bytes:
                failed[action.action_id] = (
                    f"event of {size} bytes is over PutEvents' {self._max_request_bytes}-byte request limit"
                )
                continue
            if len(chunk) == MAX_ENTRIES_PER_CALL or chunk_bytes + size > self._max_request_bytes:
                yield chunk
                chunk, chunk_bytes = [], 0
            chunk.append((action, entry))
            chunk_bytes += size
        if chunk:
            yield chunk

    def _put(self, chunk: list[tuple[Action, PutEventsRequestEntryTypeDef]], failed: dict[str, str]) -> None:
        pending = chunk
        for attempt in range(self._max_attempts):
            try:
                response = self._client.put_events(Entries=[entry for _, entry in pending])
            except ClientError as exc:
                error = exc.response.get("Error", {})
                for action, _ in pending:
                    failed[action.action_id] = f"{error.get('Code', '')}: {error.get('Message', '')}"
                return
            results = response.get("Entries", [])
            if len(results) != len(pending):
                for action, _ in pending:
                    failed[action.action_id] = f"PutEvents answered {len(results)} entries for {len(pending)}"
                return
            retry: list[tuple[Action, PutEventsRequestEntryTypeDef]] = []
            for (action, entry), result in zip(pending, results, strict=True):
                code = result.get("ErrorCode")
                if not code:
                    failed.pop(action.action_id, None)
                    continue
                failed[action.action_id] = f"{code}: {result.get('ErrorMessage', '')}"
                if code in TRANSIENT_ENTRY_ERRORS:
                    retry.append((action, entry))
            if not retry or attempt == self._max_attempts - 1:
                return
            self._sleep(random.uniform(0, self._base_delay * 2**attempt))
            pending = retry
