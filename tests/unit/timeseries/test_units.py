"""Units and plans travel between Step Functions states as JSON: they read back as they were, and a
malformed one is refused with the field named."""

from __future__ import annotations

import json
from datetime import date

import pytest

from pia.timeseries.evaluator import EvaluationReport
from pia.timeseries.readiness import Readiness
from pia.timeseries.units import BACKFILL, SWEEP, LandedBackfill, RunPlan, UnitFormatError, WorkUnit


@pytest.mark.parametrize(
    ("mode", "source"), [(SWEEP, ""), (BACKFILL, "backfill/run/sx=0/"), (SWEEP, "backfill/run/sx=2/")]
)
def test_a_unit_and_its_follow_up_read_back_from_json_text(mode: str, source: str) -> None:
    unit = WorkUnit("purchase|tag=vip", 7, 1_790_000_000, 500, mode=mode, closing=("r1",), source=source)
    more = unit.follow_up({"pk": {"S": "S#purchase|tag=vip#07"}, "sk": {"S": "user-9"}})
    for original in (unit, more):
        assert WorkUnit.from_json(json.loads(json.dumps(original.to_json()))) == original
    assert more.cursor() == {"pk": {"S": "S#purchase|tag=vip#07"}, "sk": {"S": "user-9"}}
    assert unit.cursor() is None and unit.name == "purchase|tag=vip#7"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"partition": "3"}, "partition"),
        ({"limit": 0}, "limit"),
        ({"due_at": True}, "due_at"),
        ({"start": "{not json"}, "start"),
        ({"mode": "all"}, "mode"),
        ({"closing": "r1"}, "closing"),
        ({"source": 3}, "source"),
    ],
)
def test_a_malformed_unit_names_the_field(change: dict[str, object], field: str) -> None:
    data = {**WorkUnit("s", 0, 1, 10).to_json(), **change}
    with pytest.raises(UnitFormatError, match=field):
        WorkUnit.from_json(data)


def test_a_missing_field_is_named() -> None:
    data = WorkUnit("s", 0, 1, 10).to_json()
    del data["limit"]
    with pytest.raises(UnitFormatError, match="'limit' is missing"):
        WorkUnit.from_json(data)


def test_a_plan_and_a_report_read_back_from_json_text() -> None:
    report = EvaluationReport(ruleset_version=3, rollups_read=12, failures={"s/u": "boom"}, finalized=["r"])
    report.more = WorkUnit("s", 1, 5, 10, start='{"k":1}')
    report.readiness = [Readiness(2, "trk", "computing", 240, 0, "an Athena query is still running")]
    plan = RunPlan(5, 3, (WorkUnit("s", 0, 5, 10), WorkUnit("s", 1, 5, 10)), ("r",), ("w",), {"s": "sig"})
    landed = {"s": LandedBackfill("2026-03-10", date(2026, 3, 3), True, "backfill/r/sx=0/", 16)}
    plan = RunPlan(**{**plan.__dict__, "report": report.to_json(), "landed": landed})
    assert RunPlan.from_json(json.loads(json.dumps(plan.to_json()))) == plan
    assert EvaluationReport.from_json(json.loads(json.dumps(report.to_json()))) == report
    with pytest.raises(UnitFormatError, match="rollups_read"):
        EvaluationReport.from_json({"rollups_read": "12"})
    with pytest.raises(UnitFormatError, match="landed s"):
        RunPlan.from_json({**plan.to_json(), "landed": {"s": "backfill/"}})
    with pytest.raises(UnitFormatError, match="'parts'"):
        RunPlan.from_json({**plan.to_json(), "landed": {"s": {**landed["s"].to_json(), "parts": "16"}}})
