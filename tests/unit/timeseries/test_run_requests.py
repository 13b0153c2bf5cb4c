"""The evaluator's events: each mode's request, and a malformed one refused with its field named
(Step Functions shows the message as the failed state's cause)."""

from __future__ import annotations

from typing import Any

import pytest

from pia.timeseries.run_requests import (
    FinishRequest,
    PlanRequest,
    RequestError,
    S3Location,
    UnitRequest,
    WholeRun,
    parse_request,
)
from pia.timeseries.units import WorkUnit

UNIT = WorkUnit("purchase#count", 3, 1_800_000_000, 2000)
SCHEDULED = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}


def test_the_schedule_s_event_or_an_empty_one_is_the_whole_run_in_one_invocation() -> None:
    assert parse_request(SCHEDULED) == WholeRun()
    assert parse_request({}) == WholeRun()


def test_each_state_s_request_reads_back() -> None:
    assert parse_request({"mode": "plan", "execution": "8f1c-2026"}) == PlanRequest("8f1c-2026")
    unit = parse_request({"mode": "unit", "unit": UNIT.to_json()})
    assert unit == UnitRequest(UNIT)
    follow_up = parse_request({"mode": "unit", "unit": UNIT.to_json(), "so_far": {"ready": 4}})
    assert isinstance(follow_up, UnitRequest) and follow_up.so_far is not None
    assert follow_up.so_far.ready == 4
    finish = parse_request(
        {
            "mode": "finish",
            "plan": {"bucket": "b", "key": "evaluator-runs/x/plan.json"},
            "results": {"Bucket": "b", "Key": "evaluator-runs/x/results/m/manifest.json"},
        }
    )
    assert finish == FinishRequest(
        S3Location("b", "evaluator-runs/x/plan.json"),
        S3Location("b", "evaluator-runs/x/results/m/manifest.json"),
    )


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"mode": "evaluate"}, "'mode'"),
        ({"mode": None}, "'mode'"),
        ({"mode": "plan"}, "'execution'"),
        ({"mode": "plan", "execution": "../../etc"}, "'execution'"),
        ({"mode": "plan", "execution": "x" * 81}, "'execution'"),
        ({"mode": "unit"}, "'unit'"),
        ({"mode": "unit", "unit": "purchase#count"}, "'unit'"),
        ({"mode": "unit", "unit": {**UNIT.to_json(), "limit": "2000"}}, "'limit'"),
        ({"mode": "unit", "unit": {**UNIT.to_json(), "partition": -1}}, "'partition'"),
        ({"mode": "unit", "unit": {k: v for k, v in UNIT.to_json().items() if k != "series"}}, "'series'"),
        ({"mode": "unit", "unit": UNIT.to_json(), "so_far": [1]}, "'so_far'"),
        ({"mode": "unit", "unit": UNIT.to_json(), "so_far": {"ready": "4"}}, "'ready'"),
        ({"mode": "finish", "results": {"Bucket": "b", "Key": "k"}}, "'plan'"),
        ({"mode": "finish", "plan": {"bucket": "b"}, "results": {"Bucket": "b", "Key": "k"}}, "plan.'key'"),
        (
            {"mode": "finish", "plan": {"bucket": "b", "key": "k"}, "results": {"bucket": "b", "key": "k"}},
            "results.'Bucket'",
        ),
    ],
)
def test_a_malformed_event_is_refused_naming_its_field(event: dict[str, Any], field: str) -> None:
    with pytest.raises(RequestError, match=field.replace(".", r"\.")):
        parse_request(event)
