"""What a Pinpoint reset event carries as metrics: finite doubles, whatever the exact sum (issue #15:
a sum beyond double range went out as ``"Infinity"``, which is not a number Pinpoint accepts)."""

from __future__ import annotations

import json
import math
import sys
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from pia.core.actions import Action, ActionKind
from pia.targets.pinpoint import PinpointTarget
from pia_cli.recorder import PinpointRecorder

LARGEST = Decimal("1.7976931348623157e308")


def fired(total: Decimal) -> Action:
    return Action(
        action_id="a-1",
        kind=ActionKind.FIRE_EVENT,
        user_id="user-1",
        rule_id="r-1",
        output_name="trk_big_spender",
        value=None,
        endpoint_ids=("ep-1",),
        count=3,
        total=total,
        occurred_at=datetime(2026, 11, 30, tzinfo=UTC),
    )


def sent_metrics(total: Decimal) -> dict[str, Any]:
    """The Metrics of the PutEvents request as botocore serialized it for the wire."""
    recorder = PinpointRecorder()
    client = recorder.client()
    bodies: list[bytes] = []
    client.meta.events.register_first(
        "before-call.pinpoint.*", lambda params, **_: bodies.append(params["body"])
    )
    result = PinpointTarget(client, "app").send([fired(total)])
    assert result.failed == {}
    (body,) = bodies
    request = json.loads(body, parse_constant=lambda name: pytest.fail(f"{name} on the wire"))
    metrics: dict[str, Any] = request["BatchItem"]["ep-1"]["Events"]["a-1"]["Metrics"]
    return metrics


@pytest.mark.parametrize(
    ("total", "expected"),
    [
        (Decimal("19.99"), 19.99),
        (LARGEST * 2, sys.float_info.max),
        (-LARGEST * 2, -sys.float_info.max),
        (Decimal("1e999999"), sys.float_info.max),
        (Decimal("1e-999999"), 0.0),
    ],
)
def test_the_sum_metric_is_the_nearest_finite_double(total: Decimal, expected: float) -> None:
    metrics = sent_metrics(total)
    assert metrics == {"count": 3.0, "sum": expected}
    assert math.isfinite(metrics["sum"])
