"""``pia replay`` with the Filter column (issue #16, item 1): a three-clause filter counts exactly the
users a marketer would pick by hand, on the aggregator and on a date rule, through the whole pipeline.

Every expectation is worked out by hand in the comments next to the events.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from pia_cli.replay import parse_now, replay
from tests.integration.test_replay import HEADER, pinpoint, write

FILTER_HEADER = HEADER + ",Filter,OutputName"
PREMIUM = 'country = "FR" and plan in ("gold", "silver") and price >= 20'
FULL_PRICE = 'country = "FR" and not coupon exists'
AGGREGATE = ("aggregator", "purchase", "na", "na")
NO_DATES = ("9999-99-99", "9999-99-99", "na")
WINDOW = ("2026-04-10", "2026-04-12", "price")
CELLS = [
    # row 2: two French gold or silver purchases of at least 20
    [*AGGREGATE, "greater_or_equal", "2", "na", "999", "no", *NO_DATES, PREMIUM, "trk_fr_premium_buyers"],
    # row 3: over 100 spent in France without a coupon, 2026-04-10 to 2026-04-12
    [
        "date",
        "purchase",
        "na",
        "na",
        "na",
        "999",
        "greater",
        "100",
        "no",
        *WINDOW,
        FULL_PRICE,
        "trk_date_fr_full_price",
    ],
    # row 4: rejected, the filter ends after "="
    [*AGGREGATE, "greater", "1", "na", "999", "no", *NO_DATES, "country =", "trk_broken"],
    # row 5: rejected, a filtered rule must name its output
    [*AGGREGATE, "greater", "1", "na", "999", "no", *NO_DATES, 'plan = "gold"', ""],
    # row 6: no filter: three purchases of anything
    [*AGGREGATE, "greater_or_equal", "3", "na", "999", "no", *NO_DATES, "", ""],
]
NOW = "2026-04-13T06:00:00Z"


def rows() -> list[str]:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(CELLS)
    return out.getvalue().splitlines()


def buy(user: str, price: float, at: str = "2026-04-05T10:00:00Z", **attributes: str) -> dict[str, Any]:
    return pinpoint("purchase", user, at, attributes, {"price": price})


def scenario() -> list[dict[str, Any] | str]:
    return [
        # ana: FR gold 20 and FR silver 25 both match row 2: ready. Two purchases: not row 6.
        buy("ana", 20, country="FR", plan="gold"),
        buy("ana", 25, country="FR", plan="silver"),
        # ben: one match; bronze fails the plan, DE the country. Three purchases: row 6.
        buy("ben", 20, country="FR", plan="gold"),
        buy("ben", 30, country="FR", plan="bronze"),
        buy("ben", 50, country="DE", plan="gold"),
        # cat: 19.99 is under 20; a purchase without the price metric fails "price >= 20". Row 6.
        buy("cat", 19.99, country="FR", plan="gold"),
        buy("cat", 20.00, country="FR", plan="gold"),
        pinpoint("purchase", "cat", attributes={"country": "FR", "plan": "silver"}),
        # dan: "fr" is not "FR" (exact match): no match at all.
        buy("dan", 100, country="fr", plan="gold"),
        buy("dan", 100, country="fr", plan="gold"),
        # eve: gold 30 and silver 1000: ready.
        buy("eve", 30, country="FR", plan="gold"),
        buy("eve", 1000, country="FR", plan="silver"),
        # fay, row 3: 60 + 45 without a coupon = 105 > 100 (the 50 with a coupon is left out): ready.
        # No plan attribute, so none matches row 2. Three purchases: row 6.
        buy("fay", 60, "2026-04-10T09:00:00Z", country="FR"),
        buy("fay", 50, "2026-04-11T09:00:00Z", country="FR", coupon="SPRING"),
        buy("fay", 45, "2026-04-12T09:00:00Z", country="FR"),
        # gus, row 3: 60 only (coupon; DE): not ready. Row 6.
        buy("gus", 60, "2026-04-10T09:00:00Z", country="FR"),
        buy("gus", 50, "2026-04-11T09:00:00Z", country="FR", coupon="SPRING"),
        buy("gus", 80, "2026-04-12T09:00:00Z", country="DE"),
    ]


EXPECTED = {
    "ana": {"trk_fr_premium_buyers": "ready"},
    "ben": {"trk_purchase": "ready"},
    "cat": {"trk_purchase": "ready"},
    "eve": {"trk_fr_premium_buyers": "ready"},
    "fay": {"trk_date_fr_full_price": "ready", "trk_purchase": "ready"},
    "gus": {"trk_purchase": "ready"},
}


def test_filtered_rules_count_the_right_users(tmp_path: Path) -> None:
    rules, events = write(tmp_path, scenario(), rules=rows(), header=FILTER_HEADER)

    result = replay(rules, events, parse_now(NOW), batch_size=4)

    assert result["user_attributes"] == EXPECTED
    assert result["fired_events"] == []
    assert [(r["row"], r["column"], r["message"]) for r in result["rejected_rules"]] == [
        (4, "Filter", 'position 10: expected a value after "=", but the filter ends'),
        (5, "OutputName", "a rule with a Filter needs an OutputName (the default name cannot describe it)"),
    ]


def test_one_record_per_batch_gives_the_same_answer(tmp_path: Path) -> None:
    rules, events = write(tmp_path, scenario(), rules=rows(), header=FILTER_HEADER)

    assert replay(rules, events, parse_now(NOW), batch_size=1)["user_attributes"] == EXPECTED
