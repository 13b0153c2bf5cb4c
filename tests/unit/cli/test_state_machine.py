"""The local interpreter of the evaluator's state machine, run on template.yaml's own definition: what
the fan-out does with units, follow-ups, failures and AWS's limits, with a stand-in evaluator."""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from pia_cli.local_stack import EVALUATOR_STATE_MACHINE, TEMPLATE
from pia_cli.state_machine import DefinitionError, StateMachine, StatesError, load_definition

FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:pia-evaluator"
MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:pia-evaluator"
BUCKET = "work"


class FakeS3:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_object(self, Bucket: str, Key: str, Body: bytes) -> None:
        self.objects[f"{Bucket}/{Key}"] = Body

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        if f"{Bucket}/{Key}" not in self.objects:
            raise KeyError(f"NoSuchKey {Key}")
        return {"Body": io.BytesIO(self.objects[f"{Bucket}/{Key}"])}

    def json(self, key: str) -> Any:
        return json.loads(self.objects[f"{BUCKET}/{key}"])


class StandIn:
    """The evaluator's side of the protocol: plan writes ``units`` unit names, a unit named in
    ``pages`` needs that many pages, ``fail`` maps a unit name to the errors its attempts raise."""

    def __init__(self, s3: FakeS3, units: int, pages: dict[str, int] | None = None) -> None:
        self.s3 = s3
        self.units = units
        self.pages = pages or {}
        self.fail: dict[str, list[str]] = {}
        self.calls: Counter[str] = Counter()
        self.finished: dict[str, Any] = {}
        self.answer: Callable[[dict[str, Any]], Any] | None = None

    def __call__(self, function: str, payload: Any) -> Any:
        assert function == FUNCTION
        mode = payload["mode"]
        if mode == "plan":
            self.calls["plan"] += 1
            names = [{"name": f"u{i}", "page": 1} for i in range(self.units)]
            self.s3.put_object(Bucket=BUCKET, Key="runs/x/units.json", Body=json.dumps(names).encode())
            return {
                "plan": {"bucket": BUCKET, "key": "runs/x/plan.json"},
                "units": {"bucket": BUCKET, "key": "runs/x/units.json"},
                "results": {"bucket": BUCKET, "prefix": "runs/x/results"},
                "unit_count": self.units,
                "max_concurrency": 4,
            }
        if mode == "unit":
            unit = payload["unit"]
            self.calls[unit["name"]] += 1
            errors = self.fail.get(unit["name"], [])
            if errors:
                raise StatesError(errors.pop(0), "stand-in failure")
            if self.answer is not None:
                return self.answer(payload)
            pages = (payload.get("so_far") or {}).get("pages", 0) + 1
            more = (
                {**unit, "page": unit["page"] + 1} if unit["page"] < self.pages.get(unit["name"], 1) else None
            )
            return {"report": {"pages": pages, "unit": unit["name"]}, "more": more}
        self.calls["finish"] += 1
        manifest = self.s3.json(payload["results"]["Key"].removeprefix(f"{BUCKET}/"))
        outcome: dict[str, list[Any]] = {}
        for status, files in manifest["ResultFiles"].items():
            for listed in files:
                outcome.setdefault(status, []).extend(self.s3.json(listed["Key"]))
        self.finished = outcome
        return {"failed_units": len(outcome.get("FAILED", []))}


def _machine(s3: FakeS3, invoke: Any, **limits: int) -> StateMachine:
    definition = load_definition(TEMPLATE, EVALUATOR_STATE_MACHINE, lambda value: FUNCTION)
    return StateMachine(definition, arn=MACHINE, invoke=invoke, s3=s3, **limits)


def test_every_unit_runs_with_its_follow_ups_and_finish_reads_one_result_per_unit() -> None:
    s3 = FakeS3()
    evaluator = StandIn(s3, units=3, pages={"u1": 4})
    machine = _machine(s3, evaluator)
    outcome = machine.start("run-1", {})
    assert outcome.status == "SUCCEEDED", outcome
    assert evaluator.calls == Counter({"plan": 1, "u0": 1, "u1": 4, "u2": 1, "finish": 1})
    outputs = {
        json.loads(e["Output"])["report"]["unit"]: json.loads(e["Output"])
        for e in evaluator.finished["SUCCEEDED"]
    }
    assert sorted(outputs) == ["u0", "u1", "u2"]
    assert outputs["u1"]["report"]["pages"] == 4, "the follow-ups' reports fold into the unit's one result"
    assert machine.stats.map_items == 3


def test_a_unit_that_keeps_failing_fails_alone_and_the_run_ends_failed_after_finish() -> None:
    s3 = FakeS3()
    evaluator = StandIn(s3, units=3)
    evaluator.fail = {"u0": ["Runtime.ExitError"], "u2": ["Runtime.ExitError"] * 3}
    outcome = _machine(s3, evaluator).start("run-1", {})
    assert evaluator.calls["u0"] == 2, "a killed unit is retried (States.TaskFailed)"
    assert evaluator.calls["u2"] == 3, "two retries, as the template declares, then the unit fails"
    assert [json.loads(e["Input"])["unit"]["name"] for e in evaluator.finished["FAILED"]] == ["u2"]
    assert len(evaluator.finished["SUCCEEDED"]) == 2
    assert evaluator.calls["finish"] == 1
    assert (outcome.status, outcome.error) == ("FAILED", "UnitsFailed")


def test_lambda_throttling_is_retried_with_backoff_six_times() -> None:
    s3 = FakeS3()
    evaluator = StandIn(s3, units=1)
    evaluator.fail = {"u0": ["Lambda.TooManyRequestsException"] * 6}
    machine = _machine(s3, evaluator)
    assert machine.start("run-1", {}).status == "SUCCEEDED"
    assert evaluator.calls["u0"] == 7
    assert machine.stats.waited_seconds == sum(2 * 2**n for n in range(6))


def test_a_unit_result_over_256_kb_fails_that_unit_without_retry() -> None:
    s3 = FakeS3()
    evaluator = StandIn(s3, units=2)
    evaluator.answer = lambda payload: (
        {"report": {"blob": "x" * 300_000}, "more": None}
        if payload["unit"]["name"] == "u0"
        else {"report": {}, "more": None}
    )
    outcome = _machine(s3, evaluator).start("run-1", {})
    failed = evaluator.finished["FAILED"]
    assert [f["Error"] for f in failed] == ["States.DataLimitExceeded"]
    assert evaluator.calls["u0"] == 1, "States.TaskFailed does not match a data limit error"
    assert outcome.error == "UnitsFailed"


def test_an_endless_follow_up_chain_hits_its_own_history_limit_not_the_run_s() -> None:
    s3 = FakeS3()
    evaluator = StandIn(s3, units=2, pages={"u0": 10_000})
    outcome = _machine(s3, evaluator, history_limit=200).start("run-1", {})
    assert [f["Error"] for f in evaluator.finished["FAILED"]] == ["States.Runtime"]
    assert evaluator.calls["u1"] == 1
    assert outcome.error == "UnitsFailed"


def test_a_missing_unit_list_is_caught_and_the_run_fails_without_finishing() -> None:
    s3 = FakeS3()
    evaluator = StandIn(s3, units=2)
    machine = _machine(s3, lambda f, p: {**evaluator(f, p), "units": {"bucket": BUCKET, "key": "gone"}})
    outcome = machine.start("run-1", {})
    assert (outcome.status, outcome.error) == ("FAILED", "RunFailed")
    assert evaluator.calls["finish"] == 0


def test_an_empty_unit_list_still_finishes() -> None:
    s3 = FakeS3()
    evaluator = StandIn(s3, units=0)
    assert _machine(s3, evaluator).start("run-1", {}).status == "SUCCEEDED"
    assert evaluator.calls["finish"] == 1


def test_max_concurrency_out_of_range_is_a_runtime_error() -> None:
    s3 = FakeS3()
    evaluator = StandIn(s3, units=1)
    machine = _machine(s3, lambda f, p: {**evaluator(f, p), "max_concurrency": 20_000})
    outcome = machine.start("run-1", {})
    assert (outcome.status, outcome.error) == ("FAILED", "States.Runtime")


def test_the_state_payload_stays_small_whatever_the_number_of_units() -> None:
    s3 = FakeS3()
    machine = _machine(s3, StandIn(s3, units=3_000))
    assert machine.start("run-1", {}).status == "SUCCEEDED"
    assert machine.stats.largest_payload < 2_000
    assert machine.stats.most_history_events < 100


@pytest.mark.parametrize(
    ("change", "refused"),
    [
        (
            lambda d: d["States"].__setitem__("Pause", {"Type": "Wait", "Seconds": 1, "End": True}),
            "Type 'Wait'",
        ),
        (lambda d: d["States"]["Plan"].__setitem__("TimeoutSeconds", 60), "field TimeoutSeconds"),
        (
            lambda d: d["States"]["Plan"].__setitem__("Resource", "arn:aws:states:::sqs:sendMessage"),
            "Resource",
        ),
        (lambda d: d["States"]["Plan"].__setitem__("Next", "Nowhere"), "Nowhere"),
        (
            lambda d: d["States"]["Units"]["ItemProcessor"]["ProcessorConfig"].__setitem__("Mode", "INLINE"),
            "DISTRIBUTED",
        ),
        (lambda d: d["States"]["Outcome"]["Choices"][0].__setitem__("StringMatches", "x*"), "Choice rule"),
        (lambda d: d["States"]["Finish"]["Parameters"].__setitem__("x.$", "$.a[0]"), "not a path"),
    ],
)
def test_anything_outside_the_interpreted_subset_is_refused_when_loaded(
    change: Callable[[dict[str, Any]], None], refused: str
) -> None:
    definition = load_definition(TEMPLATE, EVALUATOR_STATE_MACHINE, lambda value: FUNCTION)
    change(definition)
    with pytest.raises(DefinitionError, match=refused):
        StateMachine(definition, arn=MACHINE, invoke=lambda f, p: None, s3=FakeS3())
