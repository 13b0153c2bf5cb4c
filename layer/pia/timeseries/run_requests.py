"""What the evaluator is asked to do by each event it receives, read and checked before any work.

The schedule (``EvaluatorPath`` single-invocation) or a manual invocation sends an event with no
``mode``: the whole run in one invocation. The state machine (``EvaluatorPath`` step-functions)
sends one of three modes, in this order: ``plan``, then ``unit`` for each unit (and again for each
follow-up), then ``finish``. A malformed event is refused with the field named: Step Functions
shows the message as the failed state's cause, so an operator reads which field was wrong there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from pia.timeseries.evaluator import EvaluationReport
from pia.timeseries.units import UnitFormatError, WorkUnit

MODES = ("plan", "unit", "finish")
EXECUTION_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,80}$")
"""Step Functions execution names are at most 80 characters; these are the ones that are also safe
in an S3 key (the run's files are kept under its name)."""


class RequestError(ValueError):
    """The event is not one the evaluator understands; the message names the field."""


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str

    def to_json(self) -> dict[str, str]:
        return {"bucket": self.bucket, "key": self.key}


@dataclass(frozen=True)
class WholeRun:
    """Plan, every unit and finish in this invocation (the schedule's event, or ``{}``)."""


@dataclass(frozen=True)
class PlanRequest:
    execution: str


@dataclass(frozen=True)
class UnitRequest:
    unit: WorkUnit
    so_far: EvaluationReport | None = None
    """The report of the unit's earlier pages, folded into this page's so a follow-up chain ends
    with one result."""


@dataclass(frozen=True)
class FinishRequest:
    plan: S3Location
    results: S3Location
    """The Distributed Map's ResultWriter manifest."""


EvaluatorRequest = WholeRun | PlanRequest | UnitRequest | FinishRequest


def _object(event: Mapping[str, object], name: str) -> Mapping[str, object]:
    value = event.get(name)
    if not isinstance(value, Mapping):
        raise RequestError(f"field {name!r} must be an object, not {_shown(value)}")
    return value


def _text(data: Mapping[str, object], name: str, where: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise RequestError(f"field {where}{name!r} must be a non-empty string, not {_shown(value)}")
    return value


def _shown(value: object) -> str:
    text = repr(value)
    return "nothing" if value is None else text if len(text) <= 60 else text[:57] + "..."


def _location(event: Mapping[str, object], name: str, *, bucket: str, key: str) -> S3Location:
    data = _object(event, name)
    return S3Location(_text(data, bucket, f"{name}."), _text(data, key, f"{name}."))


def parse_request(event: Mapping[str, object]) -> EvaluatorRequest:
    """The request an event makes; :class:`RequestError` names the field that is wrong."""
    if "mode" not in event:
        return WholeRun()
    mode = event["mode"]
    if mode not in MODES:
        raise RequestError(f"field 'mode' must be one of {', '.join(MODES)}, not {_shown(mode)}")
    if mode == "plan":
        execution = _text(event, "execution", "")
        if not EXECUTION_NAME.match(execution):
            raise RequestError(
                f"field 'execution' must be 1-80 letters, digits or _.:- (a Step Functions execution "
                f"name), not {_shown(execution)}"
            )
        return PlanRequest(execution)
    if mode == "unit":
        try:
            unit = WorkUnit.from_json(_object(event, "unit"))
            so_far = event.get("so_far")
            if so_far is not None and not isinstance(so_far, Mapping):
                raise RequestError(f"field 'so_far' must be an object or null, not {_shown(so_far)}")
            report = EvaluationReport.from_json(so_far) if so_far is not None else None
        except UnitFormatError as error:
            raise RequestError(str(error)) from None
        return UnitRequest(unit, report)
    return FinishRequest(
        _location(event, "plan", bucket="bucket", key="key"),
        _location(event, "results", bucket="Bucket", key="Key"),
    )
