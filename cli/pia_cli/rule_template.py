"""The marketer's starting file: an XLSX rule table with dropdowns, explained headers and examples."""

from __future__ import annotations

from pathlib import Path

from openpyxl import Workbook
from openpyxl.comments import Comment
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation

from pia.rules.table import ABSENT, OPTIONAL_COLUMNS, PLACEHOLDER_DATE, REQUIRED_COLUMNS

TEMPLATE_COLUMNS = (*REQUIRED_COLUMNS, *(column for column in OPTIONAL_COLUMNS if column != "Key"))
"""Every column but Key, which the engine ignores (the original Honeycode table derived it)."""
LAST_ROW = 1000
OPERATORS = ("greater", "smaller", "equal", "greater_or_equal", "less_or_equal", "not_equal", "na")
DROPDOWNS: dict[str, tuple[str, ...]] = {
    "RuleType": ("aggregator", "date"),
    "Operator-C": (*OPERATORS, ABSENT),
    "Operator-V": OPERATORS,
    "ResetWhenReachTarget": ("yes", "no"),
    "Enabled": ("yes", "no"),
    "Output": ("ready", "value"),
}
SUGGESTIONS: dict[str, tuple[str, ...]] = {
    "Cap": ("na", "once", "1 per hour", "1 per day", "3 per day", "1 per 7 days", "1 per week"),
    "Aggregate": ("count", "sum", "avg", "min", "max", "distinct(attribute)"),
}
"""Dropdowns that also accept typed values: any N per K hours/days/weeks is a valid Cap, and
``distinct(product_id)`` names its own attribute."""
DATE_HELP = (
    "Dates are written YYYY-MM-DD, for example 2021-01-01. "
    f"Aggregator rules count from the moment the rule is live and take {PLACEHOLDER_DATE} in both "
    "StartDate and FinishDate. Date rules count from StartDate to FinishDate, both days included."
)
HEADER_HELP = {
    "RuleType": "aggregator: count from the moment the rule is live. date: count StartDate to FinishDate.",
    "EventName": "The custom event exactly as the app records it: case and spaces matter.",
    "AttributeName": "Only count events whose attribute has AttributeValue; na in both to count every event.",
    "Operator-C": (
        "Compares the event count with Target-C; na to ignore the count. absent (date rules with a "
        "Window, Target-C na): users seen before with no such event in the Window."
    ),
    "Operator-V": "Compares the sum of the event's metric with Target-V; na to ignore the sum.",
    "ResetWhenReachTarget": "yes: fire the trk_ event and count again from zero. no: set the trk_ attribute.",
    "StartDate": DATE_HELP,
    "FinishDate": DATE_HELP,
    "MetricName": "The metric to sum; empty for the event's only metric.",
    "Enabled": "no pauses the rule; its counts are kept.",
    "OutputName": "Overrides the name written to Pinpoint: starts with trk_, at most 50 characters, "
    "none of # : ? \\ /.",
    "Cap": (
        "Reset rules only: how often the trk_ event may fire per user, such as once, 3 per day or "
        "1 per 7 days (days are calendar days in the stack's time zone). A crossing over the cap "
        "resets the count and fires nothing. na: every crossing fires."
    ),
    "Window": 'Date rules only: "last N days" instead of StartDate and FinishDate.',
    "Filter": (
        "Only count events that match, for example: "
        'country = "FR" and plan in ("gold", "silver") and price >= 20. '
        "Text in quotes compares an attribute, a number a metric; also != contains, starts with, "
        "ends with, < <= > >=, exists, not, or, and parentheses. Names with spaces go in backticks: "
        '`first name` = "Ana". A filtered rule needs an OutputName.'
    ),
    "Aggregate": (
        "What Operator-V compares (and Output = value writes): count (default; Operator-V compares the "
        "sum, as before), sum, avg, min or max of MetricName, or distinct(attribute), the number of "
        "different values of an attribute (exact up to 1000 per user, then 1000+). Any aggregate but "
        "count reads only events that carry its metric or attribute. Date rules: count, sum, avg."
    ),
    "Output": (
        "ready (default): write ready when the conditions hold. value: write the aggregate itself, "
        "such as trk_ltv = 412.50, when it changes, at most once per user every 15 minutes "
        "(the latest value is always sent); Operator-C and Operator-V are then na."
    ),
}
# Case 1, 2 and 3 of the README, one row each, and a value output (Aggregate and Output).
EXAMPLES = (
    {
        "RuleType": "aggregator",
        "EventName": "greenbutton",
        "Operator-C": "greater",
        "Target-C": "5",
        "ResetWhenReachTarget": "no",
    },
    {
        "RuleType": "aggregator",
        "EventName": "course_completed",
        "Operator-C": "equal",
        "Target-C": "3",
        "ResetWhenReachTarget": "yes",
    },
    {
        "RuleType": "date",
        "EventName": "purchase",
        "Operator-V": "greater",
        "Target-V": "500",
        "ResetWhenReachTarget": "no",
        "StartDate": "2021-01-01",
        "FinishDate": "2021-02-01",
    },
    {
        "RuleType": "aggregator",
        "EventName": "purchase",
        "ResetWhenReachTarget": "no",
        "MetricName": "price",
        "OutputName": "trk_ltv",
        "Aggregate": "sum",
        "Output": "value",
    },
)
DEFAULTS = {
    "AttributeName": "na",
    "AttributeValue": "na",
    "Operator-C": "na",
    "Target-C": "999",
    "Operator-V": "na",
    "Target-V": "999",
    "StartDate": PLACEHOLDER_DATE,
    "FinishDate": PLACEHOLDER_DATE,
    "Enabled": "yes",
}


def write_template(path: Path) -> None:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "Rules"
    sheet.append(list(TEMPLATE_COLUMNS))
    for example in EXAMPLES:
        sheet.append([example.get(column, DEFAULTS.get(column, "")) for column in TEMPLATE_COLUMNS])
    for index, column in enumerate(TEMPLATE_COLUMNS, start=1):
        letter = get_column_letter(index)
        header = sheet.cell(row=1, column=index)
        header.font = Font(bold=True)
        if column in HEADER_HELP:
            header.comment = Comment(HEADER_HELP[column], "pia", width=320, height=140)
        sheet.column_dimensions[letter].width = max(14, len(column) + 4)
        choices = DROPDOWNS.get(column) or SUGGESTIONS.get(column)
        if choices:
            validation = DataValidation(
                type="list",
                formula1='"' + ",".join(choices) + '"',
                allow_blank=True,
                showErrorMessage=column in DROPDOWNS,
                errorTitle=column,
                error=f"{column} is one of: {', '.join(choices)}",
            )
            validation.add(f"{letter}2:{letter}{LAST_ROW}")
            sheet.add_data_validation(validation)
    sheet.freeze_panes = "A2"
    workbook.save(path)
