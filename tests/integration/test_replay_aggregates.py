"""``pia replay`` with the Aggregate and Output columns (issue #16, item 2): every aggregate, written as
a value and compared with a target, on the aggregator and on a date rule, through the whole pipeline.
Value outputs appear as their values; the document's fields are those it always had.

Every expectation is worked out by hand in the comments next to the events.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest

from pia_cli.replay import parse_now, replay
from tests.integration.test_replay import HEADER, pinpoint, write

AGGREGATE_HEADER = HEADER + ",Window,Aggregate,Output,OutputName"
LIVE = ("aggregator", "purchase", "na", "na")
NO_CONDITION = ("na", "999", "na", "999", "no", "9999-99-99", "9999-99-99")
WINDOW_ABOVE_40 = (
    "date",
    "purchase",
    "na",
    "na",
    "na",
    "999",
    "greater",
    "40",
    "no",
    "2026-04-10",
    "2026-04-12",
    "price",
)
CELLS = [
    # rows 2-6: the sum, average, minimum and maximum of price and the distinct skus, as values
    [*LIVE, *NO_CONDITION, "price", "", "sum", "value", "trk_ltv"],
    [*LIVE, *NO_CONDITION, "price", "", "avg", "value", "trk_aov"],
    [*LIVE, *NO_CONDITION, "price", "", "min", "value", "trk_min_price"],
    [*LIVE, *NO_CONDITION, "price", "", "max", "value", "trk_max_price"],
    [*LIVE, *NO_CONDITION, "", "", "distinct(sku)", "value", "trk_skus"],
    # row 7: an average price above 50 makes the user ready
    [
        *LIVE,
        "na",
        "999",
        "greater",
        "50",
        "no",
        "9999-99-99",
        "9999-99-99",
        "price",
        "",
        "avg",
        "",
        "trk_big",
    ],
    # row 8: an average above 40 from 2026-04-10 to 2026-04-12
    [*WINDOW_ABOVE_40, "", "avg", "", "trk_date_avg"],
    # row 9: rejected, daily rollups have no minimum
    [*WINDOW_ABOVE_40, "", "min", "", "trk_date_min"],
    # row 10: rejected, a value rule has no condition
    [*LIVE, "greater", "1", "na", "999", "no", "9999-99-99", "9999-99-99", "", "", "", "value", "trk_n"],
    # row 11: the number of purchases, as a value (count is the default aggregate)
    [*LIVE, *NO_CONDITION, "", "", "", "value", "trk_purchases"],
]
NOW = "2026-04-13T06:00:00Z"


def rows() -> list[str]:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(CELLS)
    return out.getvalue().splitlines()


def buy(user: str, price: float | None, sku: str, at: str = "2026-04-05T10:00:00Z") -> dict[str, Any]:
    return pinpoint("purchase", user, at, {"sku": sku}, None if price is None else {"price": price})


def scenario() -> list[dict[str, Any] | str]:
    return [
        # ana: 20.25 + 30.5 + 99.5 = 150.25 over 3 priced purchases: 50.083333 (above 50: row 7).
        # A fourth purchase has no price: it counts (row 11) and adds sku c, but no metric aggregate
        # reads it. Skus a, b, a, c: 3 distinct. All before the date window.
        buy("ana", 20.25, "a"),
        buy("ana", 30.5, "b"),
        buy("ana", 99.5, "a"),
        buy("ana", None, "c"),
        # ben: 40.5 and 45.5 in the window: average 43, above 40 (row 8), not above 50 (row 7).
        buy("ben", 40.5, "x", "2026-04-10T09:00:00Z"),
        buy("ben", 45.5, "x", "2026-04-11T09:00:00Z"),
        # cal: a negative refund line: -10 and 4.
        buy("cal", -10.0, "r", "2026-04-12T09:00:00Z"),
        buy("cal", 4.0, "s", "2026-04-12T10:00:00Z"),
    ]


EXPECTED = {
    "ana": {
        "trk_aov": "50.083333",
        "trk_big": "ready",
        "trk_ltv": "150.25",
        "trk_max_price": "99.5",
        "trk_min_price": "20.25",
        "trk_purchases": "4",
        "trk_skus": "3",
    },
    "ben": {
        "trk_aov": "43",
        "trk_date_avg": "ready",
        "trk_ltv": "86.0",
        "trk_max_price": "45.5",
        "trk_min_price": "40.5",
        "trk_purchases": "2",
        "trk_skus": "1",
    },
    "cal": {
        "trk_aov": "-3",
        "trk_ltv": "-6.0",
        "trk_max_price": "4.0",
        "trk_min_price": "-10.0",
        "trk_purchases": "2",
        "trk_skus": "2",
    },
}


@pytest.mark.parametrize("batch_size", [1, 100])
def test_every_aggregate_is_written_as_its_latest_value_or_compared(tmp_path: Path, batch_size: int) -> None:
    rules, events = write(tmp_path, scenario(), rules=rows(), header=AGGREGATE_HEADER)

    result = replay(rules, events, parse_now(NOW), batch_size=batch_size)

    assert set(result) == {"user_attributes", "fired_events", "rejected_rules", "skipped_records"}
    assert result["user_attributes"] == EXPECTED
    assert result["fired_events"] == []
    assert [(r["row"], r["column"]) for r in result["rejected_rules"]] == [
        (9, "Aggregate"),
        (10, "Operator-C"),
    ]
