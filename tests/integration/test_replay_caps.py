"""``pia replay`` with the Cap column (issue #16, item 3): capped crossings reset and fire nothing,
through the whole pipeline, whatever the batch size. Expectations are worked out in the comments."""

from __future__ import annotations

from pathlib import Path

import pytest

from pia_cli.replay import parse_now, replay
from tests.integration.test_replay import HEADER, pinpoint, write

CAP_HEADER = HEADER + ",Cap"
RULES = [
    # row 2: every login crosses; at most one trk_login per calendar day (UTC, the stack's default zone)
    "aggregator,login,na,na,greater_or_equal,1,na,999,yes,9999-99-99,9999-99-99,na,1 per day",
    # row 3: every 2nd course crosses; trk_course_completed fires once per user, ever
    "aggregator,course_completed,na,na,equal,2,na,999,yes,9999-99-99,9999-99-99,na,once",
    # row 4: rejected, not a cap
    "aggregator,purchase,na,na,greater,1,na,999,yes,9999-99-99,9999-99-99,na,twice daily",
    # row 5: a cap on a rule without reset is ignored with a warning; the rule still works
    "aggregator,greenbutton,na,na,equal,2,na,999,no,9999-99-99,9999-99-99,na,3 per day",
]
NOW = "2026-04-13T06:00:00Z"


def scenario() -> list[dict[str, object] | str]:
    return [
        # ana: three logins on 5 April (one fires), two on 6 April (one fires): 2
        pinpoint("login", "ana", "2026-04-05T08:00:00Z"),
        pinpoint("login", "ana", "2026-04-05T12:00:00Z"),
        pinpoint("login", "ana", "2026-04-05T23:59:59Z"),
        pinpoint("login", "ana", "2026-04-06T00:00:00Z"),
        pinpoint("login", "ana", "2026-04-06T18:00:00Z"),
        # ben: six courses are three crossings, and only the first fires
        *(pinpoint("course_completed", "ben", f"2026-04-0{day}T10:00:00Z") for day in range(1, 7)),
        # cat: two green buttons: ready, the ignored cap changes nothing
        pinpoint("greenbutton", "cat"),
        pinpoint("greenbutton", "cat"),
    ]


@pytest.mark.parametrize("batch_size", [1, 4])
def test_capped_crossings_reset_and_fire_nothing(tmp_path: Path, batch_size: int) -> None:
    rules, events = write(tmp_path, scenario(), rules=RULES, header=CAP_HEADER)

    result = replay(rules, events, parse_now(NOW), batch_size=batch_size)

    assert result["fired_events"] == [
        {"user_id": "ana", "event_type": "trk_login", "count": 2},
        {"user_id": "ben", "event_type": "trk_course_completed", "count": 1},
    ]
    assert result["user_attributes"] == {"cat": {"trk_greenbutton": "ready"}}
    assert [(r["row"], r["column"]) for r in result["rejected_rules"]] == [(4, "Cap")]
    assert "twice daily" in result["rejected_rules"][0]["message"]
