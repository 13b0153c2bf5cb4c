"""One fanned-out evaluator run's files in S3: its plan, its unit list, and its units' results.

Step Functions carries at most 256 KB from state to state, and a run has as many units as its series
have partitions (thousands at scale), so the states pass only where these files are: the Plan step
writes the plan and the unit list the Distributed Map reads (ItemReader), the Map writes each child
execution's result (ResultWriter, in Step Functions' own layout) and the Finish step reads them back.
The bucket's lifecycle expires them after a day.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pia.timeseries.evaluator import EvaluationReport
from pia.timeseries.run_requests import S3Location
from pia.timeseries.units import RunPlan, UnitFormatError

RUNS_PREFIX = "evaluator-runs/"
"""The template grants the state machine this prefix only (its ItemReader and ResultWriter)."""
FAILURES_CARRIED = 20
"""Failures a unit's result names (it logs every one): a unit of 2,000 rollups whose target is down
owes thousands of actions, whose keys would pass Step Functions' 256 KB payload limit."""
REASON_CHARS = 300
READINESS_CARRIED = 100
"""Readiness lines the run's output (the state machine's, bound by the same 256 KB) names: about 190
bytes each, one per live date rule, so a table of 1,400 date rules would fail every run at Finish."""


class RunFileError(ValueError):
    """A run file is missing or not what the writer wrote; the message names the object."""


@dataclass(frozen=True)
class PlannedRun:
    """What the Plan step hands the state machine: where the files are and how wide to fan out."""

    plan: S3Location
    units: S3Location
    results: S3Location
    """Bucket and prefix (in ``key``) for the Map's ResultWriter."""
    unit_count: int
    max_concurrency: int

    def to_json(self) -> dict[str, object]:
        return {
            "plan": self.plan.to_json(),
            "units": self.units.to_json(),
            "results": {"bucket": self.results.bucket, "prefix": self.results.key},
            "unit_count": self.unit_count,
            "max_concurrency": self.max_concurrency,
        }


@dataclass
class UnitResults:
    """The Map's child executions: the reports of those that succeeded, the error of the others."""

    reports: list[EvaluationReport] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


class RunFiles:
    def __init__(self, s3: Any, bucket: str) -> None:
        self._s3 = s3
        self._bucket = bucket

    def write_plan(self, execution: str, plan: RunPlan, *, max_concurrency: int) -> PlannedRun:
        base = f"{RUNS_PREFIX}{execution}/"
        plan_location = S3Location(self._bucket, base + "plan.json")
        units = S3Location(self._bucket, base + "units.json")
        self._put(units, [unit.to_json() for unit in plan.units])
        self._put(plan_location, plan.to_json())
        return PlannedRun(
            plan_location,
            units,
            S3Location(self._bucket, base + "results"),
            len(plan.units),
            max_concurrency,
        )

    def read_plan(self, location: S3Location) -> RunPlan:
        data = self._get(location)
        if not isinstance(data, dict):
            raise RunFileError(f"s3://{location.bucket}/{location.key}: not a plan object")
        try:
            return RunPlan.from_json(data)
        except UnitFormatError as error:
            raise RunFileError(f"s3://{location.bucket}/{location.key}: {error}") from None

    def unit_results(self, manifest: S3Location) -> UnitResults:
        """Every child execution's outcome, from the ResultWriter's manifest and the files it lists."""
        listed = self._get(manifest)
        files = listed.get("ResultFiles") if isinstance(listed, dict) else None
        if not isinstance(files, dict):
            raise RunFileError(f"s3://{manifest.bucket}/{manifest.key}: no ResultFiles (not a manifest)")
        bucket = str(listed.get("DestinationBucket") or manifest.bucket)
        results = UnitResults()
        for status, entries in sorted(files.items()):
            for execution in self._executions(bucket, entries):
                name = str(execution.get("Name") or execution.get("ExecutionArn", "?"))
                if status == "SUCCEEDED":
                    try:
                        results.reports.append(self._report(execution, name))
                    except RunFileError as unreadable:
                        results.failed[f"unit/{name}"] = str(unreadable)[:500]
                else:
                    error = execution.get("Error") or status
                    results.failed[f"unit/{name}"] = f"{error}: {execution.get('Cause', '')}"[:500]
        return results

    def _executions(self, bucket: str, entries: object) -> Iterator[dict[str, Any]]:
        for entry in entries if isinstance(entries, list) else []:
            location = S3Location(bucket, str(entry.get("Key", "")))
            content = self._get(location)
            if not isinstance(content, list):
                raise RunFileError(f"s3://{location.bucket}/{location.key}: not a list of executions")
            yield from (item for item in content if isinstance(item, dict))

    @staticmethod
    def _report(execution: dict[str, Any], name: str) -> EvaluationReport:
        try:
            output = json.loads(execution.get("Output") or "null")
            if not isinstance(output, dict) or not isinstance(output.get("report"), dict):
                raise RunFileError(f"unit {name}: its output has no report object")
            return EvaluationReport.from_json(output["report"])
        except (ValueError, UnitFormatError) as error:
            raise RunFileError(f"unit {name}: {error}") from None

    def _put(self, location: S3Location, data: object) -> None:
        body = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
        self._s3.put_object(Bucket=location.bucket, Key=location.key, Body=body)

    def _get(self, location: S3Location) -> Any:
        try:
            body = self._s3.get_object(Bucket=location.bucket, Key=location.key)["Body"].read()
        except self._s3.exceptions.NoSuchKey:
            raise RunFileError(f"s3://{location.bucket}/{location.key} does not exist") from None
        try:
            return json.loads(body)
        except ValueError:
            raise RunFileError(f"s3://{location.bucket}/{location.key} is not JSON") from None


def within_payload(report: EvaluationReport) -> EvaluationReport:
    """The report a unit hands back through Step Functions: every count, and at most
    :data:`FAILURES_CARRIED` failures, rollup failures first. Finish only needs to know whether a
    series had one (it then records neither its sweep nor its final evaluation)."""
    ordered = sorted(report.failures.items(), key=lambda item: (item[0].startswith("action/"), item[0]))
    kept = {key: reason[:REASON_CHARS] for key, reason in ordered[:FAILURES_CARRIED]}
    if len(ordered) > FAILURES_CARRIED:
        kept[f"unit/{len(ordered) - FAILURES_CARRIED} more failures"] = "logged by the unit"
    return replace(report, failures=kept, more=None)


def readiness_pages(summary: Mapping[str, object]) -> list[list[dict[str, object]]]:
    """The run's readiness lines in pages of at most :data:`READINESS_CARRIED`, those not ``ready``
    first (in row order) when there is more than one page, each message clipped to
    :data:`REASON_CHARS`: a page fits the state machine's 256 KB output and a CloudWatch Logs event
    (256 KB too), however many date rules are live and however long an Athena error is. A failed
    backfill's reason is every waiting rule's message; the whole reason is logged once, as a failure."""
    lines = summary.get("readiness", [])
    assert isinstance(lines, list)
    if len(lines) > READINESS_CARRIED:
        lines = sorted(lines, key=lambda line: (line.get("state") == "ready", line.get("row", 0)))
    clipped = [{**line, "message": str(line.get("message", ""))[:REASON_CHARS]} for line in lines]
    return [clipped[n : n + READINESS_CARRIED] for n in range(0, len(clipped), READINESS_CARRIED)] or [[]]


def summary_within_payload(summary: Mapping[str, object]) -> dict[str, object]:
    """The run's summary as the state machine's output and the run's log line: every count and the
    first of :func:`readiness_pages`; the rest are counted in ``readiness_more`` (and logged a page
    a line)."""
    pages = readiness_pages(summary)
    kept = pages[0]
    rest = sum(len(page) for page in pages[1:])
    more = {"readiness_more": rest} if rest else {}
    return {**summary, "readiness": kept, **more}
