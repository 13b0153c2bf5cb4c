"""Scenarios 13 and 14: random rule tables, the rule-table half of issue #15's fuzz suite.

The rows a marketer can write (and a hostile file can carry): duplicates that differ in one cell,
extreme and malformed numbers, any Unicode, formulas, control characters and separators. Checked:
validation never raises; every issue names a row of the table and one of its columns; a row is
judged the same alone as among any neighbours (only two valid rows writing one output reject each
other); every row neither live nor paused has an error; the live rules have distinct ids, outputs
and series, so no batch can hold two operations on one counter, rollup or outbox item; every
report renders without a control character; and the ruleset publishes within DynamoDB's item and
request limits and reads back unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pia.counting.store import item_size
from pia.rules.model import OUTPUT_PREFIX, Rule
from pia.rules.ruleset import Ruleset, RulesetTable
from pia.rules.sheets import MAX_TABLE_ROWS, build_report, render_csv, render_json, render_text
from pia.rules.table import ALL_COLUMNS, ParseResult, RuleTable, parse_rules, parse_table
from tests.reliability.conftest import configured_examples
from tests.reliability.ledger import ReliabilityLedger, ScenarioRow

pytestmark = pytest.mark.reliability

MAX_ITEM_BYTES = 400 * 1024
MAX_REQUEST_BYTES = 4 * 1024 * 1024
PUBLISHED_AT = "2026-11-30T00:00:00+00:00"
CLASH = "is also written by row"


class LimitedDynamoDB:
    """The three calls RulesetTable makes, refusing what DynamoDB refuses: an item over 400 KB, a
    transaction over 4 MB or with two operations on one item."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}

    @staticmethod
    def _key(item: Mapping[str, Any]) -> tuple[str, str]:
        return item["pk"]["S"], item["sk"]["S"]

    @staticmethod
    def _size(item: Mapping[str, Any]) -> int:
        size = item_size({"": {"M": dict(item)}}) - 3
        if size > MAX_ITEM_BYTES:
            raise AssertionError(f"an item of {size} bytes (DynamoDB refuses items over 400 KB)")
        return size

    def put_item(self, TableName: str, Item: dict[str, Any], **_: Any) -> dict[str, Any]:
        self._size(Item)
        self.items[self._key(Item)] = Item
        return {}

    def transact_write_items(self, TransactItems: list[dict[str, Any]], **_: Any) -> dict[str, Any]:
        puts = [op["Put"]["Item"] for op in TransactItems]
        if sum(self._size(item) for item in puts) > MAX_REQUEST_BYTES:
            raise AssertionError("a transaction over 4 MB")
        if len({self._key(item) for item in puts}) != len(puts):
            raise AssertionError("two operations on one item in a transaction")
        for item in puts:
            self.items[self._key(item)] = item
        return {}

    def get_item(self, TableName: str, Key: dict[str, Any], **_: Any) -> dict[str, Any]:
        item = self.items.get(self._key(Key))
        return {"Item": item} if item is not None else {}


def publish_and_read(rules: tuple[Rule, ...]) -> list[str]:
    store = LimitedDynamoDB()
    ruleset = Ruleset(1, rules, published_at=PUBLISHED_AT, source="rules.csv")
    try:
        RulesetTable(cast(Any, store), "rules").publish(ruleset, expected_version=0)
        read = RulesetTable(cast(Any, store), "rules").current()
    except AssertionError as exc:
        return [f"{len(rules)} rules could not be published: {exc}"]
    return [] if read == ruleset else [f"{len(rules)} rules read back differently"]


SEPARATORS = ["#", "|", "=", "\\", "*", "/", ":", "?", ",", ";", "\t", "\n", "\x1b[2J", "\u202e", "\x9b"]
odd_text = st.lists(
    st.one_of(st.characters(codec="utf-8", exclude_categories=("Cs",)), st.sampled_from(SEPARATORS)),
    max_size=60,
).map("".join)
name = st.one_of(
    st.sampled_from(["click", "buy", "view", "purchase", "Buy", "buy "]),
    st.sampled_from(
        ["_session.start", "trk_click", "=A1", "screen/view", "e#m", "x|y=z", "a" * 50, "a" * 51]
    ),
    odd_text,
)
filter_name = st.one_of(st.sampled_from(["na", "999", "", "NA", "tag", "plan", "a=b", "k|x"]), odd_text)
filter_value = st.one_of(
    st.sampled_from(["na", "999", "", "vip", "vip#price", "b=c", "v\\", "v" * 201]), odd_text
)
operator = st.one_of(
    st.sampled_from(
        ["greater", "smaller", "less", "equal", "greater_or_equal", "less_or_equal", "not_equal"]
    ),
    st.sampled_from([">", ">=", "<", "<=", "=", "==", "!=", "na", "NA", "bigger", "", "Greater Or Equal"]),
    odd_text,
)
number = st.one_of(
    st.integers(-(10**45), 10**45).map(str),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.builds("{}e{}".format, st.integers(-999, 999), st.integers(-(10**7), 10**7)),
    st.sampled_from(["999", "5", "2.5", "1,000", "1,500.25", "1,5", "", "five", "NaN", "-Infinity", "=1+1"]),
    st.sampled_from(["1e5000000", "-1e5000000", "1e-131", "1E+125", "1" * 39, "9" * 38, "0." + "1" * 39]),
    odd_text,
)
yes_no = st.one_of(
    st.sampled_from(["yes", "no", "y", "n", "true", "false", "1", "0", "", "maybe", "YES"]), odd_text
)
day = st.one_of(
    st.sampled_from(["9999-99-99", "", "2026-01-01", "2026-12-31", "2026-02-30", "2026/01/01", "0001-01-01"]),
    st.dates().map(str),
    odd_text,
)
window = st.one_of(
    st.sampled_from(
        ["", "na", "last 1 day", "last 30 days", "last 366 days", "last 367 days", "last 0 days"]
    ),
    st.integers(0, 10**30).map("last {} days".format),
    odd_text,
)
output = st.one_of(
    st.sampled_from(
        ["", "na", "plan", "greenbutton", "trk_", "TRK_x", "trk_a/b", "trk_a\x1bb", "trk_" + "o" * 47]
    ),
    st.builds(OUTPUT_PREFIX.__add__, st.text(max_size=50)),
    st.builds(OUTPUT_PREFIX.__add__, st.sampled_from(["vip", "buyers", "big", "x y", "Großer"])),
    odd_text,
)
FILTERS = [
    'plan = "gold"',
    "plan='gold'",
    'PLAN = "gold"',
    "price > 10 and not coupon exists",
    "price > 1E+1 AND NOT coupon exists",
    'tag in ("vip", "b=c") or `x|y` starts with "#"',
    '`tag` = "vip#price"',
]
filter_cell = st.one_of(
    st.sampled_from(["", "na", *FILTERS]),
    st.sampled_from(
        ["plan =", '"plan" = "x"', "price > 1e5000000", "(" * 11 + "a exists", "=A1", "x" * 1001]
    ),
    odd_text,
)
AGGREGATES = ["", "na", "count", "sum", "avg", "Average", "MIN", "max", "distinct(tag)", "distinct( a|b )"]
aggregate_cell = st.one_of(
    st.sampled_from(AGGREGATES),
    st.sampled_from(["median", "distinct", "distinct()", "distinct(" + "a" * 51 + ")", "sum(price)"]),
    odd_text,
)
output_kind = st.one_of(st.sampled_from(["", "na", "ready", "value", "VALUE", "values"]), odd_text)
CAPS = ["", "na", "once", "3 per day", "1 per 7 days", "1 per week", "2 per 6 hours"]
cap_cell = st.one_of(
    st.sampled_from(CAPS),
    st.sampled_from(
        ["0 per day", "1 per 367 days", "twice a day", "1e3 per day", "-1 per hour", "once per", "² per day"]
    ),
    st.integers(1, 6000).map(lambda n: "9" * n + " per day"),
    st.integers(0, 10**30).map("{} per day".format),
    odd_text,
)
CELLS: dict[str, st.SearchStrategy[str]] = {
    "RuleType": st.one_of(
        st.sampled_from(["aggregator", "date", "Date", "aggregate", "counter", ""]), odd_text
    ),
    "EventName": name,
    "AttributeName": filter_name,
    "AttributeValue": filter_value,
    "Operator-C": operator,
    "Target-C": number,
    "Operator-V": operator,
    "Target-V": number,
    "ResetWhenReachTarget": yes_no,
    "StartDate": day,
    "FinishDate": day,
    "MetricName": st.one_of(st.sampled_from(["", "na", "price", "amount", "*", "m" * 257]), odd_text),
    "Enabled": st.one_of(st.sampled_from(["", "yes", "no"]), yes_no),
    "OutputName": output,
    "Window": window,
    "Key": st.one_of(st.just(""), odd_text),
    "Filter": filter_cell,
    "Aggregate": aggregate_cell,
    "Output": output_kind,
    "Cap": cap_cell,
}
assert set(CELLS) == set(ALL_COLUMNS)


@st.composite
def valid_rows(draw: st.DrawFn) -> dict[str, str]:
    """A row that validates, from small pools, so that rows collide as often as they can."""
    kind = draw(st.sampled_from(["aggregator", "date"]))
    attribute = draw(
        st.sampled_from([("na", "na"), ("tag", "vip"), ("tag", "vip#price"), ("a=b", "c"), ("a", "b=c")])
    )
    count = draw(
        st.sampled_from([("greater", "2"), ("equal", "3"), ("na", "999"), ("less_or_equal", "1E+125")])
    )
    total = (
        ("na", "999") if count[0] != "na" else draw(st.sampled_from([("greater", "5"), ("smaller", "0.5")]))
    )
    if draw(st.booleans()):
        total = draw(st.sampled_from([("greater", "5"), ("smaller", "0.5"), total]))
    dates = ("9999-99-99", "9999-99-99", "")
    if kind == "date":
        dates = draw(st.sampled_from([("2026-01-01", "2026-12-31", ""), ("", "", "last 7 days")]))
    condition = draw(st.sampled_from(["", "", "", *FILTERS]))
    output = draw(
        st.sampled_from([*(["trk_x"] if "#" in attribute[1] or condition else ["", ""]), "trk_a", "trk_vip"])
    )
    if output:
        output += draw(st.sampled_from(["", *map(str, range(50))]))
    aggregate = draw(st.sampled_from(AGGREGATES[:5] if kind == "date" else AGGREGATES))
    return {
        "RuleType": kind,
        "EventName": draw(st.sampled_from(["click", "buy", "view", "buy*", "b|u=y", "Großer Kauf"]))
        + draw(st.sampled_from(["", "", *map(str, range(30))])),
        "AttributeName": attribute[0],
        "AttributeValue": attribute[1],
        "Operator-C": count[0],
        "Target-C": count[1],
        "Operator-V": total[0],
        "Target-V": total[1],
        "ResetWhenReachTarget": draw(st.sampled_from(["yes", "no"])),
        "StartDate": dates[0],
        "FinishDate": dates[1],
        "Window": dates[2],
        "MetricName": draw(st.sampled_from(["", "price", "amount", "*", "p#q"])),
        "Enabled": draw(st.sampled_from(["", "", "yes", "no"])),
        "OutputName": output,
        "Key": "",
        "Filter": condition,
        "Aggregate": aggregate,
        "Output": "",
        "Cap": draw(st.sampled_from(["", "", *CAPS])),
    }


DEFINING = (
    "OutputName",
    "MetricName",
    "AttributeName",
    "AttributeValue",
    "EventName",
    "Operator-V",
    "Filter",
    "Aggregate",
    "Cap",
)
"""The cells whose change used to leave two rows colliding: favoured when a row is copied."""


@st.composite
def rule_tables(draw: st.DrawFn) -> tuple[list[dict[str, str]], int]:
    """Rows (mostly valid ones, some with cells from anywhere), and how many were made as
    near-duplicates of another (one cell changed) or with odd cells."""
    rows = draw(
        st.lists(
            st.one_of(valid_rows(), valid_rows(), valid_rows(), st.fixed_dictionaries(CELLS)),
            min_size=1,
            max_size=20,
        )
    )
    odd = draw(st.integers(0, 3))
    for _ in range(odd):
        index = draw(st.integers(0, len(rows) - 1))
        column = draw(st.sampled_from(ALL_COLUMNS))
        rows[index] = {**rows[index], column: draw(CELLS[column])}
    copies = draw(st.integers(1, 8))
    for _ in range(copies):
        original = draw(st.sampled_from(rows))
        column = draw(st.one_of(st.sampled_from(ALL_COLUMNS), st.sampled_from(DEFINING)))
        replacement = draw(st.one_of(valid_rows().map(lambda r, c=column: r[c]), CELLS[column]))
        rows.append({**original, column: replacement})
    return rows, odd + copies


def definition(rule: Rule) -> tuple[object, ...]:
    """What a date rule's rollup holds: its events, narrowed by the filter (and, for an aggregate on
    a metric, to the events carrying it), and the summed metric."""
    summed = rule.metric_name if rule.needs_sum else None
    narrowed = rule.filter.canonical if rule.filter is not None else None
    measured = rule.aggregate.on_metric
    return (
        rule.event_name,
        rule.attribute_name,
        rule.attribute_value,
        narrowed,
        rule.needs_sum,
        summed,
        measured,
    )


def unprintable(text: str, allowed: str) -> list[str]:
    return [c for c in text if (ord(c) < 32 and c not in allowed) or 0x7F <= ord(c) <= 0x9F]


def differences_in(rows: Sequence[dict[str, str]]) -> tuple[list[str], ParseResult]:
    numbered = list(enumerate(rows, start=2))
    numbers = {n for n, _ in numbered}
    result = parse_table(RuleTable("rules.csv", ALL_COLUMNS, tuple(numbered)))
    found: list[str] = []
    for issue in result.issues:
        if issue.row not in numbers or issue.column not in ALL_COLUMNS:
            found.append(f"an issue names no row and column of the table: {issue}")

    live = {rule.row: rule for rule in result.rules}
    clashing = {
        issue.row for issue in result.errors if issue.column == "OutputName" and CLASH in issue.message
    }
    for number, row in numbered:
        alone = parse_rules([(number, row)])
        own = [
            i
            for i in result.issues
            if i.row == number and not (i.column == "OutputName" and CLASH in i.message)
        ]
        if own != list(alone.issues):
            found.append(
                f"row {number} is judged differently among neighbours: {own} != {list(alone.issues)}"
            )
        if alone.rules and number not in clashing and live.get(number) != alone.rules[0]:
            found.append(f"row {number} is valid alone but not live in the table")
        if number in live and live[number] not in alone.rules:
            found.append(f"row {number} is live in the table but not alone")
        unexplained = number not in live and number not in result.disabled_rows and number not in clashing
        if unexplained and not any(i.row == number for i in result.errors):
            found.append(f"row {number} is not live and has no error")

    for what, values in (
        ("rule id", [r.rule_id for r in result.rules]),
        ("output", [r.output_name for r in result.rules]),
    ):
        if len(set(values)) != len(values):
            found.append(f"two live rules share a {what}")
    series: dict[str, set[tuple[object, ...]]] = {}
    defined: dict[tuple[object, ...], set[str]] = {}
    for rule in result.rules:
        series.setdefault(rule.series, set()).add(definition(rule))
        defined.setdefault(definition(rule), set()).add(rule.series)
    if any(len(d) > 1 for d in series.values()) or any(len(s) > 1 for s in defined.values()):
        found.append("a series key names two different series, or one series has two keys")
    counted = {r.event_name for r in result.rules}
    for rule in result.rules:
        if not rule.output_name.startswith(OUTPUT_PREFIX) or rule.output_name in counted:
            found.append(f"row {rule.row} writes {rule.output_name!r}, outside trk_ or a counted event")

    report = build_report("rules.csv", result)
    for rendered, allowed in (
        (render_text(report), "\n"),
        (render_csv(report).decode("utf-8-sig"), "\r\n"),
        (render_json(report).decode(), "\n"),
    ):
        if unprintable(rendered, allowed):
            found.append(f"a report prints control characters {unprintable(rendered, allowed)[:3]}")
    json.loads(render_json(report))
    found.extend(publish_and_read(result.rules))
    return found, result


def run_and_record(row: ScenarioRow, rows: list[dict[str, str]], injected: int) -> None:
    try:
        found, result = differences_in(rows)
        faults = injected + len({i.row for i in result.errors})
    except Exception as exc:
        found, faults = [f"validation raised {type(exc).__name__}: {exc}"], injected
    row.record(faults=faults, differences=found)
    assert not found, found[:5]


def test_random_rule_tables_validate_row_by_row_and_publish(ledger: ReliabilityLedger) -> None:
    row = ledger.scenario(
        13,
        "Random rule tables",
        "A hypothesis strategy writes tables of 1-20 rows (three quarters valid rows from small pools, so "
        "they collide), changes up to 3 cells to odd values, and adds 1-8 near-duplicates (a row copied "
        "with one cell changed), from cells a marketer or a hostile file can hold: every operator "
        "spelling, Filter expressions valid and broken, Caps valid and broken, numbers from 1e-131 to 1e5000000 with 39 digits, NaN and decimal commas, any "
        "Unicode, formulas, control characters, bidirectional overrides and the separators of series "
        "keys and Pinpoint names. A fault is a row with an error, an odd cell or a near-duplicate. Checked: "
        "validation never raises; every issue names a row and a column of the table; each row is "
        "judged exactly as when alone (only two valid rows writing one output reject each other); a "
        "row neither live nor paused has an error; live rules have distinct ids, outputs and series "
        "keys and write only trk_ names no rule counts; no report prints a control character; and the "
        "ruleset publishes within DynamoDB's item and transaction limits and reads back unchanged.",
    )

    @settings(
        max_examples=configured_examples(),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
    )
    @given(rule_tables())
    def check(table: tuple[list[dict[str, str]], int]) -> None:
        rows, copies = table
        run_and_record(row, rows, copies)

    check()
    assert row.differences == 0, row.verdict()


def safe_text(size: int) -> st.SearchStrategy[str]:
    """``size`` characters a valid name can hold, from every plane, none stripped as blank."""
    alphabet = st.characters(
        codec="utf-8", exclude_categories=("Cc", "Cf", "Cs", "Zl", "Zp", "Zs"), exclude_characters="#:?\\/_"
    )
    return st.text(alphabet=alphabet, min_size=size, max_size=size)


@st.composite
def full_tables(draw: st.DrawFn) -> list[dict[str, str]]:
    """MAX_TABLE_ROWS rows, every cell at its longest and its widest characters."""
    # A letter first: a name can't start with "=" (a formula), "_" or "trk_" (not counted).
    event, attribute, metric = (
        "e" + draw(safe_text(49)),
        "a" + draw(safe_text(49)),
        "m" + draw(safe_text(255)),
    )
    value = draw(safe_text(195))
    tail = draw(safe_text(40))
    digits = draw(st.text(alphabet="123456789", min_size=37, max_size=37))
    listed = [draw(safe_text(190)).replace('"', "'") for _ in range(4)]
    quoted_name = "`" + attribute.replace("`", "'") + "`"

    def make(n: int, kind: str, value: str, metric: str) -> dict[str, str]:
        return {
            "RuleType": kind,
            "EventName": event,
            "AttributeName": attribute,
            "AttributeValue": f"{n:05d}{value}",
            "Operator-C": "greater",
            "Target-C": f"{n % 9 + 1}.{digits}E+100",
            "Operator-V": "smaller",
            "Target-V": f"-9.{digits}E-100",
            "ResetWhenReachTarget": "no",
            "StartDate": "2026-01-01",
            "FinishDate": "2026-12-31",
            "MetricName": metric,
            "OutputName": f"trk_{n:05d}_{tail}",
            "Filter": f"{quoted_name} in ("
            + ", ".join(f'"{n:05d}{text}"' for text in listed)
            + f") and not {quoted_name} exists or m > -{n % 9 + 1}.{digits}e-300",
        }

    # A date row's names make its series key, a DynamoDB key the validator bounds (1,000 bytes):
    # its longest AttributeValue and MetricName are the longest that still fit (same for every row).
    date_value, date_metric = value, metric
    while errors := parse_rules([(2, make(1, "date", date_value, date_metric))]).errors:
        assert date_value or date_metric, errors
        if len(date_value.encode()) >= len(date_metric.encode()):
            date_value = date_value[:-1]
        else:
            date_metric = date_metric[:-1]

    def rows() -> Iterator[dict[str, str]]:
        for n in range(MAX_TABLE_ROWS):
            if n % 2:
                yield make(n, "date", date_value, date_metric)
            else:
                yield make(n, "aggregator", value, metric)

    return list(rows())


def test_rule_tables_at_the_size_limit_publish(ledger: ReliabilityLedger) -> None:
    runs = max(1, configured_examples() // 25)
    row = ledger.scenario(
        14,
        "Rule tables at the size limit",
        f"Runs: a 25th of PIA_RELIABILITY_EXAMPLES. Tables of {MAX_TABLE_ROWS} rows (every row a rule, "
        "half aggregator, half date) whose every cell is at its longest (a Filter of about 1,000 "
        "characters; a date row's names as long as its 1,000-byte series key allows), in random characters from "
        "every Unicode plane (several MB of ruleset JSON). A fault is a table over the 400 KB a single "
        "item holds. Checked: each row validates and goes live, and the ruleset publishes in items "
        "under 400 KB and transactions under 4 MB and reads back unchanged.",
    )

    @settings(max_examples=runs, deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)
    @given(full_tables())
    def check(rows: list[dict[str, str]]) -> None:
        result = parse_rules(enumerate(rows, start=2))
        found = [str(e) for e in result.errors[:3]]
        if len(result.rules) != MAX_TABLE_ROWS:
            found.append(f"{len(result.rules)} of {MAX_TABLE_ROWS} rows went live")
        found.extend(publish_and_read(result.rules))
        row.record(faults=1, differences=found)
        assert not found, found[:5]

    check()
    assert row.differences == 0, row.verdict()
