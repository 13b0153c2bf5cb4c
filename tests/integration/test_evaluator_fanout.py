"""The evaluator's two paths on the real template (issue #12): the state machine (EvaluatorPath
step-functions, interpreted locally from template.yaml) and one invocation per run (single-invocation)
leave the targets with the same attributes, run after run, while the state machine splits the work into
bounded units under its own role."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from pia.timeseries.run_files import READINESS_CARRIED
from pia_cli.datagen import generate
from pia_cli.demo import SAMPLE_RULES
from pia_cli.emulator import embedded_emulator
from pia_cli.local_stack import LOCAL_PINPOINT_APP, EvaluatorRun, LocalStack

pytestmark = pytest.mark.filterwarnings("error:No application metrics")
"""Every invocation, plan, unit and finish alike, publishes its metrics (a unit used to publish none)."""
START = datetime(2026, 4, 30, 12, tzinfo=UTC)
RUNS = (START, START + timedelta(hours=1), START + timedelta(days=1, hours=2), START + timedelta(days=3))
UNIT_ROLLUPS = 3


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@contextmanager
def _stack(path: str) -> Iterator[tuple[LocalStack, Clock]]:
    clock = Clock(START)
    parameters = {
        "PinpointApplicationId": LOCAL_PINPOINT_APP,
        "ActionTargets": "pinpoint",
        "EvaluatorPath": path,
        "EvaluatorUnitRollups": str(UNIT_ROLLUPS),
        "RollupPartitions": "4",
    }
    with embedded_emulator():
        stack = LocalStack.deploy(f"pia-{path}", parameters, clock=clock, log_stream=io.StringIO())
        with stack:
            yield stack, clock


def _runs(path: str) -> tuple[list[EvaluatorRun], dict[str, dict[str, str]]]:
    with _stack(path) as (stack, clock):
        stack.publish_rules(SAMPLE_RULES)
        runner = stack.mapping_runner("aggregator")
        events = generate(users=40, days=4, end=START, seed=3)
        stack.put_records((e.data, e.partition_key) for e in events)
        runner.drain()
        runs = []
        for moment in RUNS:
            clock.now = moment
            runs.append(stack.run_evaluator())
        attributes = stack.targets_view().attributes
        events = boto3.client("events", region_name=stack.deployment.region)
        states = {
            logical_id: events.describe_rule(Name=name)["State"]
            for logical_id, name in stack.deployment.physical_ids("AWS::Events::Rule").items()
            if logical_id.startswith("Evaluator")
        }
    enabled = sorted(lid for lid, state in states.items() if state == "ENABLED")
    assert enabled == (
        ["EvaluatorStateMachineSchedule"] if path == "step-functions" else ["EvaluatorFunctionSchedule"]
    )
    return runs, attributes


def test_the_state_machine_and_the_single_invocation_leave_the_targets_the_same() -> None:
    fanned, fanned_attributes = _runs("step-functions")
    single, single_attributes = _runs("single-invocation")

    assert [run.path for run in fanned] == ["step-functions"] * len(RUNS)
    assert [run.path for run in single] == ["single-invocation"] * len(RUNS)
    assert fanned_attributes == single_attributes
    assert any("trk_date_level_up" in attrs for attrs in fanned_attributes.values())
    outcomes = [run.outcome for run in fanned]
    assert all(outcome is not None and outcome.status == "SUCCEEDED" for outcome in outcomes), outcomes
    first = fanned[0]
    assert first.output["backfilled"], "the first run backfills the new date rules"
    assert first.stats is not None and first.stats.map_items > 1, (
        "a backfilled series larger than a unit is swept by the units, not evaluated in the plan"
    )
    for run in fanned:
        output: dict[str, Any] = run.output
        assert output["failed_units"] == 0 and output["failures"] == 0
        assert output["most_unit_rollups"] <= UNIT_ROLLUPS
    assert max(run.output["units"] for run in fanned) > len(RUNS), "units and their follow-up pages"


def test_a_role_without_the_run_files_prefix_fails_the_run_at_its_unit_list(tmp_path: Any) -> None:
    from pia_cli.local_stack import TEMPLATE

    text = TEMPLATE.read_text()
    granted = "Resource: !Sub ${BackfillResultsBucket.Arn}/evaluator-runs/*"
    assert text.count(granted) == 1
    (tmp_path / "template.yaml").write_text(
        text.replace(granted, "Resource: !Sub ${BackfillResultsBucket.Arn}/elsewhere/*")
    )
    for directory in ("src", "layer"):
        (tmp_path / directory).symlink_to(TEMPLATE.parent / directory)
    with embedded_emulator():
        stack = LocalStack.deploy(
            "pia-narrow",
            {"PinpointApplicationId": LOCAL_PINPOINT_APP, "ActionTargets": "pinpoint"},
            template=tmp_path / "template.yaml",
            clock=lambda: START,
            log_stream=io.StringIO(),
        )
        with stack:
            run = stack.run_evaluator()
    assert run.outcome is not None
    assert (run.outcome.status, run.outcome.error) == ("FAILED", "RunFailed")
    assert "AccessDenied" in run.outcome.cause


def test_a_run_with_thousands_of_date_rules_fits_its_output_in_the_state_payload(tmp_path: Any) -> None:
    """Finish returned the run's readiness, one line per live date rule, as the state machine's
    output: past about 1,350 date rules it passed Step Functions' 256 KB, and every run failed
    (``States.DataLimitExceeded``, which no Retry or Catch handles) after doing all its work. The
    output keeps every count and the readiness lines that are not ``ready``, up to a bound."""
    header = SAMPLE_RULES.read_text().splitlines()[0]
    rows = [
        f"date,purchase,na,na,greater_or_equal,{n},na,999,no,9999-99-99,9999-99-99,na,last 7 days,"
        f"trk_many_{n:04d},na,,,"
        for n in range(1, 2_501)
    ]
    table = tmp_path / "many-rules.csv"
    table.write_text("\n".join([header, *rows]) + "\n")
    with _stack("step-functions") as (stack, _clock):
        stack.publish_rules(table)
        run = stack.run_evaluator()
    assert run.outcome is not None and run.outcome.status == "SUCCEEDED", vars(run.outcome)
    output: dict[str, Any] = run.output
    assert output["rules"] == 2_500
    assert len(output["readiness"]) <= READINESS_CARRIED
    assert output["readiness_more"] == 2_500 - len(output["readiness"])
