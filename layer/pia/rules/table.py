"""The rule table: the contract with the marketer.

Rows arrive as mappings of header -> cell text from Honeycode, CSV or XLSX. Columns are matched by
name (case, spaces, ``-`` and ``_`` ignored) because the original solution broke whenever a column
moved. Every problem is reported against its row and column, and one bad row never stops the rest.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pia.core.limits import MAX_ATTRIBUTE_NAME, MAX_ATTRIBUTE_VALUE, MAX_EVENT_TYPE, MAX_OUTPUT_NAME
from pia.rules.aggregates import (
    MAX_DISTINCT,
    Aggregate,
    AggregateError,
    parse_aggregate,
)
from pia.rules.caps import Cap, CapError, parse_cap
from pia.rules.model import OUTPUT_PREFIX, Comparison, Condition, Rule, RuleType, compiled_filter

if TYPE_CHECKING:
    from pia.rules.filters import Filter

REQUIRED_COLUMNS = (
    "RuleType",
    "EventName",
    "AttributeName",
    "AttributeValue",
    "Operator-C",
    "Target-C",
    "Operator-V",
    "Target-V",
    "ResetWhenReachTarget",
    "StartDate",
    "FinishDate",
)
OPTIONAL_COLUMNS = (
    "Key",
    "MetricName",
    "Enabled",
    "OutputName",
    "Window",
    "Filter",
    "Cap",
    "Aggregate",
    "Output",
)
ALL_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS

NO_FILTER = frozenset({"na", "999", ""})
PLACEHOLDER_DATE = "9999-99-99"
MAX_WINDOW_DAYS = 366
MAX_METRIC_NAME = 256
"""Events keep metric names of any length, so this bound is not about matching: it keeps every cell,
and so the ruleset of a full table, bounded."""


def normalize_header(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", str(name)).lower()


_CANONICAL = {normalize_header(c): c for c in ALL_COLUMNS}


_OPERATOR_WORDS: dict[str, Comparison | None] = {
    "greater": Comparison.GT,
    "greater_or_equal": Comparison.GE,
    "smaller": Comparison.LT,
    "less": Comparison.LT,
    "less_or_equal": Comparison.LE,
    "smaller_or_equal": Comparison.LE,
    "equal": Comparison.EQ,
    "not_equal": Comparison.NE,
    ">": Comparison.GT,
    ">=": Comparison.GE,
    "<": Comparison.LT,
    "<=": Comparison.LE,
    "=": Comparison.EQ,
    "==": Comparison.EQ,
    "!=": Comparison.NE,
    "na": None,
}
OPERATOR_HELP = (
    "use greater, smaller, equal, greater_or_equal, less_or_equal, not_equal (or > >= < <= = !=), or na"
)
ABSENT = "absent"
"""The Operator-C word of an absence rule: no matching event in the Window, for a user seen before."""


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class RowIssue:
    row: int
    column: str
    message: str
    severity: Severity = Severity.ERROR

    def __str__(self) -> str:
        return f"row {self.row}, {self.column}: {self.message}"


@dataclass(frozen=True)
class ParseResult:
    """``row_numbers`` lists every non-empty row read; ``paused`` holds the valid rules of rows with
    Enabled = no, which are not live but keep their counters (a pause is not a deletion)."""

    rules: tuple[Rule, ...]
    issues: tuple[RowIssue, ...]
    rows_read: int
    disabled_rows: tuple[int, ...] = ()
    row_numbers: tuple[int, ...] = ()
    paused: tuple[Rule, ...] = ()

    @property
    def errors(self) -> tuple[RowIssue, ...]:
        return tuple(i for i in self.issues if i.severity is Severity.ERROR)

    @property
    def warnings(self) -> tuple[RowIssue, ...]:
        return tuple(i for i in self.issues if i.severity is Severity.WARNING)

    def with_warnings(self, extra: Iterable[RowIssue]) -> ParseResult:
        issues = sorted(self.issues + tuple(extra), key=lambda i: (i.row, i.severity != Severity.ERROR))
        return replace(self, issues=tuple(issues))


class TableError(ValueError):
    """The table as a whole cannot be read (no header, a required column missing)."""


@dataclass(frozen=True)
class RuleTable:
    """A source's rows as the marketer sees them: headers as written, and each row under the number
    the source shows (a sheet row, a Honeycode row index), so every message points at the right row."""

    source: str
    headers: tuple[str, ...]
    rows: tuple[tuple[int, Mapping[str, object]], ...]


@dataclass
class _RowReader:
    row: int
    cells: Mapping[str, str]
    issues: list[RowIssue] = field(default_factory=list)
    silenced: set[str] = field(default_factory=set)

    def text(self, column: str) -> str:
        return self.cells.get(column, "").strip()

    def error(self, column: str, message: str) -> None:
        if column not in self.silenced:
            self.issues.append(RowIssue(self.row, column, message))

    def warn(self, column: str, message: str) -> None:
        self.issues.append(RowIssue(self.row, column, message, Severity.WARNING))

    @property
    def failed(self) -> bool:
        return any(issue.severity is Severity.ERROR for issue in self.issues)

    def failed_in(self, *columns: str) -> bool:
        return any(i.severity is Severity.ERROR and i.column in columns for i in self.issues) or bool(
            self.silenced.intersection(columns)
        )


def _cell_text(value: object) -> str:
    """Cells are data, never formulas: ``=HYPERLINK(...)`` stays the literal text it is."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, date):
        return value.isoformat()[:10]
    return str(value)


def canonical_columns(headers: Iterable[str]) -> dict[str, str]:
    """Map each source header to its canonical column name; unknown headers are dropped."""
    found: dict[str, str] = {}
    for header in headers:
        canonical = _CANONICAL.get(normalize_header(header))
        if canonical is not None and canonical not in found.values():
            found[header] = canonical
    return found


def check_header(headers: Iterable[str]) -> None:
    present = set(canonical_columns(headers).values())
    missing = [c for c in REQUIRED_COLUMNS if c not in present]
    if missing:
        raise TableError(f"the table has no column {', '.join(missing)} (columns are matched by name)")


def _parse_operator(reader: _RowReader, column: str) -> tuple[bool, Comparison | None]:
    raw = reader.text(column)
    key = raw.lower().replace(" ", "_")
    if key in _OPERATOR_WORDS:
        return True, _OPERATOR_WORDS[key]
    reader.error(column, f'"{raw}" is not an operator; {OPERATOR_HELP}' if raw else f"empty; {OPERATOR_HELP}")
    return False, None


_THOUSANDS = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d+)?")
"""``1,000`` is a thousands separator; ``1,5`` is a decimal comma and must not silently become 15."""


MAX_TARGET_DIGITS = 38
MIN_TARGET_MAGNITUDE = Decimal("1E-130")
MAX_TARGET_MAGNITUDE = Decimal("1E+126")
"""DynamoDB's number type, which holds the sums targets are compared with. A count or sum never
leaves it, and a target far outside it (``1e5000000``) only makes the comparison slow."""


def _storable(value: Decimal) -> bool:
    if value.is_zero():
        return True
    significant = len("".join(map(str, value.as_tuple().digits)).rstrip("0"))
    return (
        significant <= MAX_TARGET_DIGITS and MIN_TARGET_MAGNITUDE <= value.copy_abs() < MAX_TARGET_MAGNITUDE
    )


def _shown(text: str, limit: int = 60) -> str:
    """Cell text quoted in a message, cut short so one huge cell cannot flood the report."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse_target(reader: _RowReader, column: str, op: Comparison | None, integral: bool) -> Decimal | None:
    raw = reader.text(column)
    if op is None:
        return None
    text = raw.replace(",", "") if _THOUSANDS.fullmatch(raw) else raw
    try:
        value = Decimal(text) if text else None
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite():
        reader.error(
            column,
            f'"{_shown(raw)}" is not a number' if raw else "a number is required when the operator is set",
        )
        return None
    if not _storable(value):
        reader.error(
            column,
            f'"{_shown(raw)}" is out of range: a target has at most {MAX_TARGET_DIGITS} significant digits '
            f"and lies between {MIN_TARGET_MAGNITUDE} and {MAX_TARGET_MAGNITUDE} (or is 0)",
        )
        return None
    if integral and value != value.to_integral_value():
        reader.warn(column, f"{raw} is not a whole number; counts are compared with it as is")
    return value


def _parse_date(reader: _RowReader, column: str) -> tuple[bool, date | None]:
    raw = reader.text(column)
    if raw in ("", PLACEHOLDER_DATE):
        return True, None
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
        reader.error(column, f'"{raw}" is not a date; write YYYY-MM-DD (for example 2026-01-31)')
        return False, None
    try:
        return True, date.fromisoformat(raw)
    except ValueError:
        reader.error(column, f'"{raw}" is not a calendar date')
        return False, None


_WINDOW = re.compile(r"last\s+(\d+)\s+days?", re.IGNORECASE)


def _parse_window(reader: _RowReader) -> int | None:
    raw = reader.text("Window")
    if raw.lower() in ("", "na"):
        return None
    match = _WINDOW.fullmatch(raw)
    if match is None:
        reader.error("Window", f'"{raw}" is not a window; write "last N days", for example "last 30 days"')
        return None
    days = int(match.group(1))
    if not 1 <= days <= MAX_WINDOW_DAYS:
        reader.error("Window", f"{days} days is outside 1..{MAX_WINDOW_DAYS}")
        return None
    return days


def _yes_no(reader: _RowReader, column: str, default: bool | None) -> bool | None:
    raw = reader.text(column).lower()
    if raw in ("yes", "y", "true", "1"):
        return True
    if raw in ("no", "n", "false", "0"):
        return False
    if raw == "" and default is not None:
        return default
    reader.error(column, f'"{reader.text(column)}" must be yes or no')
    return None


def rule_id_for(fields: Mapping[str, Any]) -> str:
    canonical = json.dumps(fields, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def default_output_name(
    rule_type: RuleType, event_name: str, attribute_value: str | None, absent: bool = False
) -> str:
    """An absence rule's default says so (``trk_absent_purchase``): it must not take, and clash with,
    the name of a date rule counting the same event."""
    kind = "absent_" if absent else "date_" if rule_type is RuleType.DATE else ""
    prefix = OUTPUT_PREFIX + kind
    suffix = f"_{attribute_value}" if attribute_value is not None else ""
    return f"{prefix}{event_name}{suffix}"


_FORMULA_EXEMPT = frozenset({"Key", "Operator-C", "Operator-V"})
"""Key is derived (often a formula) and ignored; operators have their own check, where ``=`` is valid."""


def _reject_formulas(reader: _RowReader) -> None:
    """A cell starting with ``=`` is a spreadsheet formula that was never evaluated: the engine would
    otherwise count an event, or write a Pinpoint attribute, literally named ``=HYPERLINK(...)``.
    Such a cell gets this one message; later checks of it stay silent."""
    flagged: set[str] = set()
    for column, value in reader.cells.items():
        text = value.strip()
        if column not in _FORMULA_EXEMPT and text.startswith("="):
            reader.error(
                column,
                f'"{_shown(text)}" looks like a spreadsheet formula; cells are read as plain text and never '
                "evaluated, so type the value itself",
            )
            flagged.add(column)
    reader.silenced |= flagged


@dataclass(frozen=True)
class _Conditions:
    count: Condition | None
    sum: Condition | None
    metric_name: str | None
    absent: bool = False


@dataclass(frozen=True)
class _Measure:
    aggregate: Aggregate
    distinct_attribute: str | None
    writes_value: bool


@dataclass(frozen=True)
class _Timing:
    reset: bool
    start: date | None
    finish: date | None
    window: int | None


def _rule_type(reader: _RowReader) -> RuleType | None:
    raw = reader.text("RuleType").lower()
    if raw in ("aggregator", "aggregate"):
        return RuleType.AGGREGATOR
    if raw == "date":
        return RuleType.DATE
    reader.error("RuleType", f'"{reader.text("RuleType")}" must be aggregator or date')
    return None


def _event_name(reader: _RowReader) -> str:
    event_name = reader.text("EventName")
    if not event_name:
        reader.error("EventName", "empty; write the event name exactly as the app records it")
    elif event_name.startswith("_") or event_name.startswith(OUTPUT_PREFIX):
        reader.error(
            "EventName", f'"{event_name}" is a system or output event; only custom events are counted'
        )
    elif len(event_name) > MAX_EVENT_TYPE:
        reader.error("EventName", f"longer than {MAX_EVENT_TYPE} characters")
    return event_name


def _attribute_filter(reader: _RowReader) -> tuple[str | None, str | None]:
    name_raw = reader.text("AttributeName")
    value_raw = reader.text("AttributeValue")
    name = None if name_raw.lower() in NO_FILTER else name_raw
    value = None if value_raw.lower() in NO_FILTER else value_raw
    if (name is None) != (value is None):
        missing = "AttributeValue" if value is None else "AttributeName"
        reader.error(
            missing, "an attribute filter needs both AttributeName and AttributeValue (or na in both)"
        )
    if name is not None and len(name) > MAX_ATTRIBUTE_NAME:
        reader.error("AttributeName", f"longer than {MAX_ATTRIBUTE_NAME} characters")
    if value is not None and len(value) > MAX_ATTRIBUTE_VALUE:
        reader.error("AttributeValue", f"longer than {MAX_ATTRIBUTE_VALUE} characters")
    return name, value


def _filter(reader: _RowReader) -> Filter | None:
    """The Filter column. A filtered rule names its output: no default name could describe the
    filter within Pinpoint's 50 characters, and a hash would mean nothing in a segment."""
    raw = reader.text("Filter")
    if raw.lower() in NO_FILTER:
        return None
    from pia.rules.filters import FilterError  # noqa: PLC0415 (cold start: only a filtered rule needs it)

    try:
        compiled = compiled_filter(raw)
    except FilterError as exc:
        reader.error("Filter", str(exc))
        return None
    if reader.text("OutputName").lower() in ("", "na"):
        reader.error(
            "OutputName", "a rule with a Filter needs an OutputName (the default name cannot describe it)"
        )
    return compiled


def _absence(reader: _RowReader) -> _Conditions:
    """Operator-C ``absent``: the rule compares nothing, so Target-C is na and Operator-V is na (a sum
    of no events says nothing more); RuleType and Window are checked with the timing."""
    if reader.text("Target-C").lower() not in NO_FILTER:
        reader.error("Target-C", f'"{_shown(reader.text("Target-C"))}" must be na: absent compares no count')
    if reader.text("Operator-V").lower() not in ("na", ""):
        reader.error("Operator-V", "must be na when Operator-C is absent: a rule on no events has no sum")
    metric_name = reader.text("MetricName")
    if metric_name and metric_name.lower() != "na":
        reader.warn("MetricName", "ignored: an absence rule sums no metric")
    return _Conditions(None, None, None, absent=True)


def _cap(reader: _RowReader, rule_type: RuleType | None, reset: bool) -> Cap | None:
    """The Cap column. A cap limits fired events, which only a reset aggregator rule sends: on any
    other rule it is a warning and ignored (the rule keeps working and its id), not an error that
    would take the row down."""
    raw = reader.text("Cap")
    if raw.lower() in NO_FILTER:
        return None
    try:
        cap = parse_cap(raw)
    except CapError as exc:
        reader.error("Cap", f'"{_shown(raw)}": {exc}')
        return None
    if rule_type is RuleType.DATE:
        reader.warn("Cap", "ignored for date rules: their attribute follows the window, it fires no event")
        return None
    if rule_type is RuleType.AGGREGATOR and not reset:
        reader.warn(
            "Cap",
            "ignored: ResetWhenReachTarget is no, so the rule sets its attribute once and fires no event; "
            "set ResetWhenReachTarget to yes to cap how often it fires",
        )
        return None
    return cap


def _measure(reader: _RowReader) -> _Measure:
    """The Aggregate and Output columns: what the rule measures, and whether it writes that measure."""
    try:
        aggregate, distinct = parse_aggregate(reader.text("Aggregate"))
    except AggregateError as exc:
        reader.error("Aggregate", str(exc))
        aggregate, distinct = Aggregate.COUNT, None
    if distinct is not None and len(distinct) > MAX_ATTRIBUTE_NAME:
        reader.error("Aggregate", f"the attribute name is longer than {MAX_ATTRIBUTE_NAME} characters")
    output = reader.text("Output").lower()
    if output not in ("", "na", "ready", "value"):
        reader.error("Output", f'"{_shown(reader.text("Output"))}" must be ready (the default) or value')
    return _Measure(aggregate, distinct, output == "value")


def _conditions(reader: _RowReader, measure: _Measure) -> _Conditions:
    """Operator-C/Target-C on the count, Operator-V/Target-V on the Aggregate (the sum, for count
    rules), and MetricName, which a sum and the other metric aggregates read. A rule with
    ``Output = value`` writes its measure whatever it is, so it has no condition."""
    if reader.text("Operator-C").lower() == ABSENT:
        return _absence(reader)
    ok_c, op_c = _parse_operator(reader, "Operator-C")
    ok_v, op_v = _parse_operator(reader, "Operator-V")
    target_c = _parse_target(reader, "Target-C", op_c, integral=True) if ok_c else None
    target_v = _parse_target(reader, "Target-V", op_v, integral=False) if ok_v else None
    if measure.writes_value:
        for column, op in (("Operator-C", op_c), ("Operator-V", op_v)):
            if op is not None:
                reader.error(
                    column, "a rule with Output = value writes its aggregate whatever it is; set na here"
                )
    elif ok_c and ok_v and op_c is None and op_v is None:
        reader.error(
            "Operator-C", "both Operator-C and Operator-V are na; a rule needs at least one condition"
        )
    if (
        measure.aggregate is Aggregate.DISTINCT
        and target_v is not None
        and target_v.copy_abs() > MAX_DISTINCT
    ):
        reader.error(
            "Target-V",
            f"distinct counts stop at {MAX_DISTINCT} values per user, so a target above {MAX_DISTINCT} "
            "could never be compared exactly",
        )
    metric_name = reader.text("MetricName") or None
    if metric_name is not None and metric_name.lower() == "na":
        metric_name = None
    if metric_name is not None and len(metric_name) > MAX_METRIC_NAME:
        reader.error("MetricName", f"longer than {MAX_METRIC_NAME} characters")
    if metric_name is not None and measure.aggregate is Aggregate.DISTINCT:
        reader.warn("MetricName", "ignored: a distinct aggregate reads an attribute, not a metric")
    elif op_v is None and metric_name is not None and not measure.aggregate.on_metric:
        reader.warn("MetricName", "ignored: Operator-V is na, so no metric is summed")
    return _Conditions(
        Condition(op_c, target_c) if op_c is not None and target_c is not None else None,
        Condition(op_v, target_v) if op_v is not None and target_v is not None else None,
        metric_name,
    )


def _measure_fits(
    reader: _RowReader, rule_type: RuleType | None, measure: _Measure, reset: bool, absent: bool
) -> None:
    """What date rules and value outputs cannot do is an error, never a silently different answer."""
    if rule_type is RuleType.DATE and not measure.aggregate.on_rollups:
        reader.error(
            "Aggregate",
            f"{measure.aggregate.value} is not available for date rules, which read daily rollups "
            "(a count and a sum per day); use count, sum or avg",
        )
    if rule_type is RuleType.DATE and measure.writes_value:
        reader.error("Output", "value outputs are for aggregator rules; a date rule writes ready/not-ready")
    if absent and (measure.aggregate is not Aggregate.COUNT or measure.writes_value):
        column = "Output" if measure.writes_value else "Aggregate"
        reader.error(
            column, "an absence rule (Operator-C absent) reads no aggregate and writes ready/not-ready"
        )
    if rule_type is RuleType.AGGREGATOR and measure.writes_value and reset:
        reader.error(
            "ResetWhenReachTarget", "a rule with Output = value never resets; set no (it has no target)"
        )


def _timing(reader: _RowReader, rule_type: RuleType | None, absent: bool = False) -> _Timing:
    """ResetWhenReachTarget, StartDate/FinishDate and Window, read as the rule type uses them."""
    ok_start, start = _parse_date(reader, "StartDate")
    ok_finish, finish = _parse_date(reader, "FinishDate")
    window = _parse_window(reader) if "Window" in reader.cells else None
    window_given = "Window" in reader.cells and reader.text("Window").lower() not in ("", "na")
    if absent:
        return _absence_timing(reader, rule_type, start, finish, window, window_given)
    if rule_type is RuleType.AGGREGATOR:
        reset = _yes_no(reader, "ResetWhenReachTarget", default=None)
        if start is not None or finish is not None:
            reader.warn(
                "StartDate", "ignored for aggregator rules, which count from the moment the rule is live"
            )
        if window is not None:
            reader.warn("Window", "ignored for aggregator rules")
        return _Timing(bool(reset), None, None, None)
    if rule_type is RuleType.DATE:
        if reader.text("ResetWhenReachTarget").lower() in ("yes", "y", "true"):
            reader.warn("ResetWhenReachTarget", "ignored for date rules; their attribute follows the window")
        if window is not None:
            if start is not None or finish is not None:
                reader.error("Window", "give either a Window or StartDate/FinishDate, not both")
        elif ok_start and ok_finish and not window_given:
            needed = "a date rule needs StartDate and FinishDate (YYYY-MM-DD) or a Window"
            if start is None:
                reader.error("StartDate", needed)
            if finish is None:
                reader.error("FinishDate", needed)
            if start is not None and finish is not None and start > finish:
                reader.error("StartDate", f"{start} is after FinishDate {finish}")
    return _Timing(False, start, finish, window)


def _absence_timing(
    reader: _RowReader,
    rule_type: RuleType | None,
    start: date | None,
    finish: date | None,
    window: int | None,
    window_given: bool,
) -> _Timing:
    """An absence rule is a date rule over a rolling Window: the quiet period. Fixed dates are not
    offered: "nothing between two dates" is final the day after, and is a segment, not a win-back."""
    if rule_type is RuleType.AGGREGATOR:
        reader.error(
            "RuleType", "absent needs RuleType date: the user enters when the quiet period has passed"
        )
    if start is not None or finish is not None:
        reader.error("StartDate", "an absence rule takes a Window (last N days), not StartDate/FinishDate")
    elif window is None and not window_given:
        reader.error("Window", 'absent needs a Window, the quiet period: for example "last 30 days"')
    if reader.text("ResetWhenReachTarget").lower() in ("yes", "y", "true"):
        reader.warn("ResetWhenReachTarget", "ignored for date rules; their attribute follows the window")
    return _Timing(False, None, None, window)


PINPOINT_NAME_FORBIDDEN = "#:?\\/"
"""Characters Pinpoint's attribute names must avoid (its console cannot show them)."""
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _name_problem(name: str) -> tuple[str, str] | None:
    """What makes ``name`` unusable as an output, and the character at fault (empty when none is)."""
    if not name.startswith(OUTPUT_PREFIX):
        return (
            f"must start with {OUTPUT_PREFIX}, so a rule never overwrites an attribute the app owns "
            "(such as plan) and never writes an event that is counted",
            "",
        )
    if len(name) == len(OUTPUT_PREFIX):
        return f"needs a name after {OUTPUT_PREFIX}", ""
    for char in name:
        if char in PINPOINT_NAME_FORBIDDEN:
            return f'contains "{char}", which Pinpoint attribute names avoid (# : ? \\ /)', char
        if unicodedata.category(char) in _INVISIBLE:
            return f"contains the control character U+{ord(char):04X}", char
    return None


def _output_name(
    reader: _RowReader,
    rule_type: RuleType | None,
    event_name: str,
    attribute_value: str | None,
    absent: bool = False,
) -> str:
    """The name the rule writes: OutputName, or the default built from EventName and AttributeValue.
    Either way it must be a ``trk_`` name Pinpoint accepts; a default that is not names the cell
    it came from."""
    given = reader.text("OutputName")
    output_name = "" if given.lower() in ("", "na") else given
    if rule_type is not None and event_name and not output_name:
        output_name = default_output_name(rule_type, event_name, attribute_value, absent)
        given = ""
    if output_name and len(output_name) > MAX_OUTPUT_NAME:
        reader.error(
            "OutputName" if given else "EventName",
            f'output name "{output_name[:60]}" is longer than {MAX_OUTPUT_NAME} characters '
            "(a Pinpoint limit); set a shorter OutputName",
        )
        return output_name
    problem = _name_problem(output_name) if output_name else None
    if problem is None or reader.failed_in("EventName", "AttributeValue", "OutputName"):
        return output_name
    reason, char = problem
    if given:
        reader.error("OutputName", f'output name "{_shown(output_name)}" {reason}')
    else:
        column = "AttributeValue" if attribute_value and char and char in attribute_value else "EventName"
        reader.error(
            column, f'the output name "{_shown(output_name)}" made from it {reason}; set an OutputName'
        )
    return output_name


def _parse_row(reader: _RowReader) -> Rule | None:
    """One parser per column group; each records its errors on the reader, and a row with any error
    gives no rule."""
    _reject_formulas(reader)
    rule_type = _rule_type(reader)
    event_name = _event_name(reader)
    attribute_name, attribute_value = _attribute_filter(reader)
    rule_filter = _filter(reader)
    measure = _measure(reader)
    conditions = _conditions(reader, measure)
    timing = _timing(reader, rule_type, conditions.absent)
    _measure_fits(reader, rule_type, measure, timing.reset, conditions.absent)
    output_name = _output_name(reader, rule_type, event_name, attribute_value, conditions.absent)
    cap = _cap(reader, rule_type, timing.reset)
    if reader.failed or rule_type is None:
        return None
    if (
        rule_type is RuleType.AGGREGATOR
        and timing.reset
        and conditions.count is not None
        and conditions.count.holds(Decimal(1))
        and conditions.sum is None
        and cap is None
    ):
        reader.warn("Operator-C", "met by every single event, so it fires and resets on every event")

    def condition(c: Condition | None) -> list[object]:
        return [None, None] if c is None else [c.op, str(c.target)]

    identity = {
        "type": rule_type.value,
        "event": event_name,
        "attr": [attribute_name, attribute_value],
        "c": condition(conditions.count),
        "v": condition(conditions.sum),
        "reset": timing.reset,
        "dates": [timing.start, timing.finish, timing.window],
        "metric": conditions.metric_name,
    }
    if output_name != default_output_name(rule_type, event_name, attribute_value, conditions.absent):
        identity["output"] = output_name
    if rule_filter is not None:
        identity["filter"] = rule_filter.canonical
    if measure.aggregate is not Aggregate.COUNT:
        identity["aggregate"] = [measure.aggregate.value, measure.distinct_attribute]
    if measure.writes_value:
        identity["output_kind"] = "value"
    if conditions.absent:
        identity["absent"] = True
    if cap is not None:
        identity["cap"] = cap.source
    return Rule(
        rule_id=rule_id_for(identity),
        row=reader.row,
        rule_type=rule_type,
        event_name=event_name,
        attribute_name=attribute_name,
        attribute_value=attribute_value,
        count_condition=conditions.count,
        sum_condition=conditions.sum,
        reset=timing.reset,
        start_date=timing.start,
        finish_date=timing.finish,
        window_days=timing.window,
        metric_name=conditions.metric_name,
        output_name=output_name,
        filter=rule_filter,
        aggregate=measure.aggregate,
        distinct_attribute=measure.distinct_attribute,
        writes_value=measure.writes_value,
        absent=conditions.absent,
        cap=cap,
    )


def parse_rules(rows: Iterable[tuple[int, Mapping[str, object]]]) -> ParseResult:
    """Parse numbered rows (the number is what the marketer sees: a sheet row, a Honeycode row index).

    Each row's keys are source headers; they are matched to columns by name, so order never matters.
    """
    parsed: list[Rule] = []
    issues: list[RowIssue] = []
    disabled: list[int] = []
    paused: list[Rule] = []
    numbers: list[int] = []
    for row_number, raw in rows:
        columns = canonical_columns(raw.keys())
        cells = {canonical: _cell_text(raw[source]) for source, canonical in columns.items()}
        if not any(v.strip() for v in cells.values()):
            continue
        numbers.append(row_number)
        reader = _RowReader(row_number, cells)
        enabled = _yes_no(reader, "Enabled", default=True) if "Enabled" in cells else True
        rule = _parse_row(reader)
        issues.extend(reader.issues)
        if enabled is False:
            disabled.append(row_number)
            if rule is not None:
                paused.append(rule)
            continue
        if rule is not None and enabled is not None:
            parsed.append(rule)

    by_output: dict[str, list[Rule]] = {}
    for rule in parsed:
        by_output.setdefault(rule.output_name, []).append(rule)
    live: list[Rule] = []
    for rule in parsed:
        clashes = [other for other in by_output[rule.output_name] if other is not rule]
        if clashes:
            others = ", ".join(str(other.row) for other in clashes)
            issues.append(
                RowIssue(
                    rule.row,
                    "OutputName",
                    f'output name "{rule.output_name}" is also written by row {others}; '
                    "both are rejected until one is changed or disabled",
                )
            )
        else:
            live.append(rule)
    issues.sort(key=lambda i: (i.row, i.severity != Severity.ERROR))
    return ParseResult(
        tuple(live),
        tuple(issues),
        len(numbers),
        tuple(disabled),
        row_numbers=tuple(numbers),
        paused=tuple(paused),
    )


def parse_table(table: RuleTable) -> ParseResult:
    """Parse a whole source table. A header without the required columns fails the whole table
    (raising :class:`TableError`) instead of failing every row: a renamed column must never look
    like a table whose rules were all deleted."""
    check_header(table.headers)
    return parse_rules(table.rows)
