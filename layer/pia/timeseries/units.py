"""Bounded units of one evaluator run, and the plan that lists them.

A run is split so that no invocation ever holds a whole series: the plan names, per open series and
rollup partition, a unit that reads at most ``limit`` rollups; a unit that finds more due than its
bound hands back a follow-up unit carrying the continuation cursor. Units and plans travel between
Step Functions states as JSON, so both parse their own text back and name the field that is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

DUE = "due"
"""A unit that reads only the rollups whose next change is due (the sparse ``due`` index)."""
SWEEP = "sweep"
"""A unit that reads every rollup of its partition: the series' rules changed, or a backfill landed
since its last sweep, so the due moments kept in the items were computed for other rules (or other
history) and must be recomputed."""
BACKFILL = "backfill"
"""A unit that merges one part of a landed backfill's result (``source``, part ``partition``) into its
users' rollups and evaluates them in the same write."""
MODES = (DUE, SWEEP, BACKFILL)


class UnitFormatError(ValueError):
    """A unit or plan read back from JSON is malformed; the message names the field."""


def _field(data: Mapping[str, object], name: str, kind: type, where: str) -> Any:
    if name not in data:
        raise UnitFormatError(f"{where}: field {name!r} is missing")
    value = data[name]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise UnitFormatError(f"{where}: field {name!r} must be an integer, not {value!r}")
    if not isinstance(value, kind):
        raise UnitFormatError(f"{where}: field {name!r} must be {kind.__name__}, not {value!r}")
    return value


@dataclass(frozen=True)
class WorkUnit:
    """A bounded slice of one run: at most ``limit`` rollup items of one series partition."""

    series: str
    partition: int
    due_at: int
    """Epoch seconds of the run: the unit reads items due at or before it."""
    limit: int
    """Most items this unit may read (the configured bound)."""
    start: str = ""
    """Opaque continuation cursor (JSON text), ``""`` for the first page."""
    mode: str = DUE
    closing: tuple[str, ...] = ()
    """Closed date rules of the series that get their final evaluation in this run."""
    source: str = ""
    """A backfill unit: where its result's parts are. A sweep: the source of the series' last whole
    backfill, so that it drops any other (``""``: it leaves backfills alone)."""

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise UnitFormatError(f"unit {self.series}/{self.partition}: field 'limit' must be >= 1")
        if self.partition < 0:
            raise UnitFormatError(f"unit {self.series}: field 'partition' must be >= 0")
        if self.mode not in MODES:
            raise UnitFormatError(f"unit {self.series}/{self.partition}: field 'mode' must be one of {MODES}")

    def to_json(self) -> dict[str, object]:
        return {
            "series": self.series,
            "partition": self.partition,
            "due_at": self.due_at,
            "limit": self.limit,
            "start": self.start,
            "mode": self.mode,
            "closing": list(self.closing),
            "source": self.source,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> WorkUnit:
        if not isinstance(data, Mapping):
            raise UnitFormatError(f"unit: expected an object, not {data!r}")
        where = f"unit {data.get('series', '?')}/{data.get('partition', '?')}"
        start = data.get("start", "")
        if not isinstance(start, str):
            raise UnitFormatError(f"{where}: field 'start' must be str, not {start!r}")
        if start:
            try:
                json.loads(start)
            except ValueError:
                raise UnitFormatError(f"{where}: field 'start' is not JSON text") from None
        mode = data.get("mode", DUE)
        if not isinstance(mode, str):
            raise UnitFormatError(f"{where}: field 'mode' must be str, not {mode!r}")
        closing = data.get("closing", [])
        if not isinstance(closing, list) or not all(isinstance(c, str) for c in closing):
            raise UnitFormatError(f"{where}: field 'closing' must be a list of rule ids")
        source = data.get("source", "")
        if not isinstance(source, str):
            raise UnitFormatError(f"{where}: field 'source' must be str, not {source!r}")
        return cls(
            series=_field(data, "series", str, where),
            partition=_field(data, "partition", int, where),
            due_at=_field(data, "due_at", int, where),
            limit=_field(data, "limit", int, where),
            start=start,
            mode=mode,
            closing=tuple(closing),
            source=source,
        )

    @property
    def name(self) -> str:
        return f"{self.series}#{self.partition}"

    def follow_up(self, cursor: Mapping[str, Any]) -> WorkUnit:
        return WorkUnit(
            self.series,
            self.partition,
            self.due_at,
            self.limit,
            json.dumps(cursor, sort_keys=True, separators=(",", ":")),
            self.mode,
            self.closing,
            self.source,
        )

    def cursor(self) -> dict[str, Any] | None:
        return json.loads(self.start) if self.start else None


@dataclass(frozen=True)
class LandedBackfill:
    """A series' backfill result that landed in a run: where its parts are, and the coverage ``finish``
    records once every part is merged."""

    activation: str
    first_day: date
    final: bool
    source: str
    parts: int

    def to_json(self) -> dict[str, object]:
        return {
            "activation": self.activation,
            "first_day": self.first_day.isoformat(),
            "final": self.final,
            "source": self.source,
            "parts": self.parts,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object], series: str) -> LandedBackfill:
        where = f"plan: landed {series}"
        if not isinstance(data, Mapping):
            raise UnitFormatError(f"{where}: expected an object, not {data!r}")
        first_day = _field(data, "first_day", str, where)
        try:
            day = date.fromisoformat(first_day)
        except ValueError:
            raise UnitFormatError(f"{where}: field 'first_day' is not a date: {first_day!r}") from None
        return cls(
            activation=_field(data, "activation", str, where),
            first_day=day,
            final=_field(data, "final", bool, where),
            source=_field(data, "source", str, where),
            parts=_field(data, "parts", int, where),
        )


@dataclass(frozen=True)
class RunPlan:
    """What one run does after recovery and backfill: its units, and what ``finish`` needs."""

    due_at: int
    ruleset_version: int
    units: tuple[WorkUnit, ...] = ()
    closing: tuple[str, ...] = ()
    """Closed date rules that get their final evaluation in this run."""
    waiting: tuple[str, ...] = ()
    """Series whose backfill is not done: not evaluated this run."""
    swept: Mapping[str, str] = field(default_factory=dict)
    """Series swept this run, with the rules' signature to record once every unit has succeeded."""
    report: Mapping[str, object] = field(default_factory=dict)
    """The plan phase's own report (recovery, backfill), as :meth:`EvaluationReport.to_json`."""
    landed: Mapping[str, LandedBackfill] = field(default_factory=dict)
    """Series whose backfill result landed this run: their units are backfill units, one per part."""

    def to_json(self) -> dict[str, object]:
        return {
            "landed": {series: value.to_json() for series, value in self.landed.items()},
            "due_at": self.due_at,
            "ruleset_version": self.ruleset_version,
            "units": [u.to_json() for u in self.units],
            "closing": list(self.closing),
            "waiting": list(self.waiting),
            "swept": dict(self.swept),
            "report": dict(self.report),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> RunPlan:
        where = "plan"
        units = data.get("units", [])
        if not isinstance(units, list):
            raise UnitFormatError(f"{where}: field 'units' must be a list")
        closing = data.get("closing", [])
        waiting = data.get("waiting", [])
        swept = data.get("swept", {})
        report = data.get("report", {})
        if not isinstance(closing, list) or not all(isinstance(c, str) for c in closing):
            raise UnitFormatError(f"{where}: field 'closing' must be a list of rule ids")
        if not isinstance(waiting, list) or not all(isinstance(c, str) for c in waiting):
            raise UnitFormatError(f"{where}: field 'waiting' must be a list of series")
        if not isinstance(swept, Mapping) or not all(isinstance(v, str) for v in swept.values()):
            raise UnitFormatError(f"{where}: field 'swept' must map series to signatures")
        if not isinstance(report, Mapping):
            raise UnitFormatError(f"{where}: field 'report' must be an object")
        landed = data.get("landed", {})
        if not isinstance(landed, Mapping):
            raise UnitFormatError(f"{where}: field 'landed' must map series to objects")
        return cls(
            due_at=_field(data, "due_at", int, where),
            ruleset_version=_field(data, "ruleset_version", int, where),
            units=tuple(WorkUnit.from_json(u) for u in units),
            closing=tuple(closing),
            waiting=tuple(waiting),
            swept={str(k): str(v) for k, v in swept.items()},
            report=dict(report),
            landed={str(k): LandedBackfill.from_json(v, str(k)) for k, v in landed.items()},
        )
