"""Amazon Pinpoint as an action target (engagement features reached end of support on 2026-10-30;
kept for the users still running them, behind this adapter).

Attributes go out through UpdateEndpointsBatch (100 endpoints a call): a Pinpoint user attribute
lives on each of the user's endpoints, so every endpoint seen for the user is updated. Reset events
go out through PutEvents (100 events a call), keyed by the action id so a retry names the same event.
Their ``count`` and ``sum`` metrics are doubles, as Pinpoint's API defines them: see
:func:`metric_value`.
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from pia.core.actions import Action, ActionKind, SendResult

if TYPE_CHECKING:
    from mypy_boto3_pinpoint import PinpointClient

MAX_ENDPOINTS_PER_CALL = 100
MAX_EVENTS_PER_CALL = 100
THROTTLED = frozenset({"TooManyRequestsException", "ThrottlingException", "InternalServerErrorException"})


def metric_value(exact: Decimal | int) -> float:
    """The nearest finite double. A sum beyond the double range saturates at the largest double of
    its sign instead of becoming ``inf``, which botocore writes as the string ``"Infinity"`` (not a
    number Pinpoint accepts, so the action would be refused on every retry); a saturated sum still
    compares as the exact one does against any threshold a segment or journey can hold. The exact
    value is the ``sum`` of the EventBridge target's detail, a decimal string."""
    value = float(Decimal(exact))
    return value if abs(value) <= sys.float_info.max else math.copysign(sys.float_info.max, value)


class PinpointTarget:
    name = "pinpoint"

    def __init__(
        self,
        client: PinpointClient,
        application_id: str,
        *,
        max_attempts: int = 5,
        base_delay: float = 0.1,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._app = application_id
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._sleep = sleep

    def send(self, actions: Sequence[Action]) -> SendResult:
        failed: dict[str, str] = {}
        attributes = [a for a in actions if a.kind is ActionKind.SET_ATTRIBUTE]
        events = [a for a in actions if a.kind is ActionKind.FIRE_EVENT]
        for action in actions:
            if not action.endpoint_ids:
                failed[action.action_id] = "no endpoint is known for this user; Pinpoint needs one"
        self._send_attributes([a for a in attributes if a.endpoint_ids], failed)
        self._send_events([a for a in events if a.endpoint_ids], failed)
        return SendResult(failed)

    def _call(self, fn: Callable[[], Any]) -> tuple[Any, str | None]:
        for attempt in range(self._max_attempts):
            try:
                return fn(), None
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code not in THROTTLED or attempt == self._max_attempts - 1:
                    return None, f"{code}: {exc.response.get('Error', {}).get('Message', '')}"
                self._sleep(random.uniform(0, self._base_delay * 2**attempt))
        return None, "unreachable"

    def _update_endpoints(self, items: list[Any]) -> Any:
        return self._client.update_endpoints_batch(
            ApplicationId=self._app, EndpointBatchRequest={"Item": items}
        )

    def _put_events(self, batch: dict[str, Any]) -> Any:
        return self._client.put_events(ApplicationId=self._app, EventsRequest={"BatchItem": batch})

    def _send_attributes(self, actions: Sequence[Action], failed: dict[str, str]) -> None:
        """One endpoint item per (user, endpoint), merging all of a user's attributes in the batch."""
        merged: dict[tuple[str, str], dict[str, list[str]]] = {}
        owners: dict[tuple[str, str], list[str]] = {}
        for action in actions:
            for endpoint_id in action.endpoint_ids:
                key = (action.user_id, endpoint_id)
                merged.setdefault(key, {})[action.output_name] = [action.value or ""]
                owners.setdefault(key, []).append(action.action_id)
        keys = list(merged)
        for start in range(0, len(keys), MAX_ENDPOINTS_PER_CALL):
            chunk = keys[start : start + MAX_ENDPOINTS_PER_CALL]
            items: list[Any] = [
                {
                    "Id": endpoint_id,
                    "User": {"UserId": user_id, "UserAttributes": merged[(user_id, endpoint_id)]},
                }
                for user_id, endpoint_id in chunk
            ]
            _, error = self._call(partial(self._update_endpoints, items))
            if error:
                for key in chunk:
                    for action_id in owners[key]:
                        failed[action_id] = error

    def _send_events(self, actions: Sequence[Action], failed: dict[str, str]) -> None:
        for start in range(0, len(actions), MAX_EVENTS_PER_CALL):
            chunk = actions[start : start + MAX_EVENTS_PER_CALL]
            batch: dict[str, Any] = {}
            where: dict[str, str] = {}
            for action in chunk:
                endpoint_id = action.endpoint_ids[-1]
                where[action.action_id] = endpoint_id
                entry = batch.setdefault(endpoint_id, {"Endpoint": {}, "Events": {}})
                entry["Events"][action.action_id] = {
                    "EventType": action.output_name,
                    "Timestamp": action.occurred_at.isoformat(),
                    "Attributes": {"rule_id": action.rule_id, "user_id": action.user_id[:100]},
                    "Metrics": {"count": metric_value(action.count), "sum": metric_value(action.total)},
                }
            response, error = self._call(partial(self._put_events, batch))
            if error:
                for action in chunk:
                    failed[action.action_id] = error
                continue
            results = response.get("EventsResponse", {}).get("Results", {})
            for action in chunk:
                item = results.get(where[action.action_id], {}).get("EventsItemResponse", {})
                status = item.get(action.action_id, {}).get("StatusCode", 202)
                if status >= 300:
                    failed[action.action_id] = f"PutEvents item status {status}: " + str(
                        item.get(action.action_id, {}).get("Message", "")
                    )
