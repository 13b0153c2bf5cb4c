"""``pia replay`` with absence rules (issue #16, item 4): the win-back audiences a marketer would
pick by hand, from history alone, through the whole pipeline.

Every expectation is worked out by hand in the comments next to the events.
"""

from __future__ import annotations

from pathlib import Path

from pia_cli.replay import parse_now, replay
from tests.integration.test_replay import HEADER, pinpoint, write

ABSENCE_HEADER = HEADER + ",Window,OutputName"
RULES = [
    # row 2: no purchase in the last 30 days (the default output name, trk_absent_purchase)
    "date,purchase,na,na,absent,na,na,999,no,9999-99-99,9999-99-99,na,last 30 days,na",
    # row 3: last app_open 14 or more days ago, under a name of the marketer's choosing
    "date,app_open,na,na,absent,na,na,999,no,9999-99-99,9999-99-99,na,last 14 days,trk_lapsed",
    # row 4: rejected, absent compares no count
    "date,app_open,na,na,absent,3,na,999,no,9999-99-99,9999-99-99,na,last 14 days,trk_bad",
]
NOW = "2026-04-13T06:00:00Z"


def test_replay_marks_the_users_quiet_for_the_whole_period_and_only_users_seen_before(tmp_path: Path) -> None:
    events = [
        # ann's last purchase, 1 March: on 13 April the last 30 days (15 March..13 April) hold none.
        pinpoint("purchase", "ann", "2026-03-01T10:00:00Z"),
        # ben bought again on 1 April, inside the 30 days: not absent.
        pinpoint("purchase", "ben", "2026-03-01T10:00:00Z"),
        pinpoint("purchase", "ben", "2026-04-01T10:00:00Z"),
        # cy never bought (not in the purchase audience: never seen); last app_open 30 March, 14 days
        # before 13 April: the last 14 days are 31 March..13 April, so cy has just entered.
        pinpoint("app_open", "cy", "2026-03-30T23:00:00Z"),
        # dee opened the app on 31 March, still inside the 14 days.
        pinpoint("app_open", "dee", "2026-03-31T00:30:00Z"),
    ]
    rules, events_path = write(tmp_path, events, RULES, header=ABSENCE_HEADER)

    result = replay(rules, events_path, parse_now(NOW))

    assert result["user_attributes"] == {
        "ann": {"trk_absent_purchase": "ready"},
        "cy": {"trk_lapsed": "ready"},
    }
    assert [(r["row"], r["column"]) for r in result["rejected_rules"]] == [(4, "Target-C")]
    assert result["fired_events"] == []

    # A day earlier cy's app_open is still inside the window.
    earlier = replay(rules, events_path, parse_now("2026-04-12T23:59:00Z"))
    assert earlier["user_attributes"] == {"ann": {"trk_absent_purchase": "ready"}}
