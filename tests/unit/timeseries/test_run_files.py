"""A fanned-out run's files: the unit list and plan the Plan step writes, the results Finish reads
back in Step Functions' ResultWriter layout, and a unit's result kept under the state payload limit."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from pia.timeseries.evaluator import EvaluationReport
from pia.timeseries.run_files import FAILURES_CARRIED, RunFileError, RunFiles, within_payload
from pia.timeseries.run_requests import S3Location
from pia.timeseries.units import RunPlan, WorkUnit


class FakeS3:
    class exceptions:
        class NoSuchKey(Exception):
            pass

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}

    def put_object(self, Bucket: str, Key: str, Body: bytes) -> None:
        self.objects[(Bucket, Key)] = Body

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        if (Bucket, Key) not in self.objects:
            raise self.exceptions.NoSuchKey(Key)
        return {"Body": io.BytesIO(self.objects[(Bucket, Key)])}


PLAN = RunPlan(due_at=1_800_000_000, ruleset_version=3, units=(WorkUnit("s", 0, 1_800_000_000, 5),) * 2)


def test_the_plan_and_its_unit_list_read_back_and_only_locations_travel() -> None:
    s3 = FakeS3()
    planned = RunFiles(s3, "work").write_plan("exec-1", PLAN, max_concurrency=7)
    assert planned.to_json() == {
        "plan": {"bucket": "work", "key": "evaluator-runs/exec-1/plan.json"},
        "units": {"bucket": "work", "key": "evaluator-runs/exec-1/units.json"},
        "results": {"bucket": "work", "prefix": "evaluator-runs/exec-1/results"},
        "unit_count": 2,
        "max_concurrency": 7,
    }
    assert json.loads(s3.objects[("work", "evaluator-runs/exec-1/units.json")]) == [
        u.to_json() for u in PLAN.units
    ]
    assert RunFiles(s3, "work").read_plan(planned.plan) == PLAN


def _results(s3: FakeS3, succeeded: list[dict[str, Any]], failed: list[dict[str, Any]]) -> S3Location:
    files: dict[str, list[dict[str, Any]]] = {"FAILED": [], "PENDING": [], "SUCCEEDED": []}
    for status, entries in (("SUCCEEDED", succeeded), ("FAILED", failed)):
        if entries:
            s3.put_object(Bucket="work", Key=f"r/{status}_0.json", Body=json.dumps(entries).encode())
            files[status].append({"Key": f"r/{status}_0.json", "Size": 1})
    manifest = {"DestinationBucket": "work", "MapRunArn": "arn", "ResultFiles": files}
    s3.put_object(Bucket="work", Key="r/manifest.json", Body=json.dumps(manifest).encode())
    return S3Location("work", "r/manifest.json")


def test_finish_reads_every_unit_s_report_and_names_the_failed_and_unreadable_ones() -> None:
    s3 = FakeS3()
    good = {"Name": "u0", "Status": "SUCCEEDED", "Output": json.dumps({"report": {"ready": 2}, "more": None})}
    garbled = {"Name": "u1", "Status": "SUCCEEDED", "Output": json.dumps({"report": {"ready": "2"}})}
    failed = {"Name": "u2", "Status": "FAILED", "Error": "Runtime.ExitError", "Cause": "killed"}
    results = RunFiles(s3, "work").unit_results(_results(s3, [good, garbled], [failed]))
    assert [r.ready for r in results.reports] == [2]
    assert set(results.failed) == {"unit/u1", "unit/u2"}
    assert results.failed["unit/u2"] == "Runtime.ExitError: killed"
    assert "'ready'" in results.failed["unit/u1"]


def test_a_missing_manifest_is_named() -> None:
    with pytest.raises(RunFileError, match=r"r/manifest\.json does not exist"):
        RunFiles(FakeS3(), "work").unit_results(S3Location("work", "r/manifest.json"))


def test_a_unit_s_result_keeps_its_counts_and_a_bounded_sample_of_failures_rollups_first() -> None:
    report = EvaluationReport(ready=3, units=1)
    report.failures = {f"action/a{n:05d}/pinpoint": "x" * 1_000 for n in range(5_000)}
    report.failures["s/user-9"] = "conflict"
    report.more = WorkUnit("s", 0, 1, 5)
    kept = within_payload(report)
    assert kept.ready == 3 and kept.more is None
    assert len(kept.failures) == FAILURES_CARRIED + 1
    assert "s/user-9" in kept.failures, "finish needs to see the series had a failed rollup"
    assert len(json.dumps(kept.to_json())) < 20_000
    assert len(report.failures) == 5_001, "the report itself is left whole"


def test_the_run_output_clips_each_readiness_message() -> None:
    """A failed backfill's reason is the message of every rule waiting on it: 100 rules waiting on an
    Athena error of 3 KB made a 300 KB output, past Step Functions' 256 KB."""
    from pia.timeseries.run_files import READINESS_CARRIED, REASON_CHARS, summary_within_payload

    reason = "Athena query failed: " + "x" * 3_000
    lines = [
        {"row": n, "output_name": f"trk_{n}", "state": "computing", "message": reason}
        for n in range(2, READINESS_CARRIED + 2)
    ]
    output = summary_within_payload({"rules": len(lines), "readiness": lines})
    assert [line["row"] for line in output["readiness"]] == [line["row"] for line in lines]
    assert all(len(line["message"]) == REASON_CHARS for line in output["readiness"])
    assert "readiness_more" not in output and len(json.dumps(output)) < 64_000


def test_the_run_s_log_carries_every_readiness_line_in_pages_that_fit_a_log_event() -> None:
    """The run's log line carried every readiness line: at about 1,350 live date rules it passed
    CloudWatch Logs' 256 KB event, and the end of it (the rules not ready) was cut. Every line is
    logged once, not-ready first, in pages that fit."""
    from pia.timeseries.run_files import READINESS_CARRIED, readiness_pages, summary_within_payload

    reason = "Athena query failed: " + "x" * 3_000
    lines = [
        {
            "row": n,
            "output_name": f"trk_{n:04d}",
            "state": "ready" if n % 3 else "computing",
            "message": reason,
        }
        for n in range(2, 2_502)
    ]
    summary = {"rules": len(lines), "readiness": lines}

    pages = readiness_pages(summary)
    head = summary_within_payload(summary)

    assert head["readiness"] == pages[0] and head["readiness_more"] == len(lines) - READINESS_CARRIED
    logged = [line["row"] for page in pages for line in page]
    assert sorted(logged) == [line["row"] for line in lines], "every line once"
    waiting = [line["row"] for line in lines if line["state"] != "ready"]
    assert logged[: len(waiting)] == waiting, "the rules not ready come first"
    assert max(len(json.dumps(page)) for page in pages) < 256 * 1024 // 4
