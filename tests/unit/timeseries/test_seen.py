"""The seen-values summary is one DynamoDB item a day: whatever the events' names and values, its
stored text stays within MAX_BYTES of UTF-8, well under the 400 KB item limit (issue #15: 4-byte
names made an 813 KB item, and the evaluator failed at the end of every run)."""

from __future__ import annotations

from pia.timeseries.seen import MAX_ATTRIBUTES_PER_EVENT, MAX_BYTES, MAX_EVENT_NAMES, SeenSummary

ITEM_LIMIT = 400 * 1024
FACE = "\U0001f600"
"""Four bytes of UTF-8, one character."""


def stored_bytes(summary: SeenSummary) -> int:
    return len(summary.dumps().encode())


def test_four_byte_names_at_every_cap_stay_within_the_byte_budget() -> None:
    summary = SeenSummary()
    for e in range(MAX_EVENT_NAMES):
        event_name = f"{e:04d}" + FACE * 46
        summary.add_values(
            event_name, {f"{a:02d}" + FACE * 48: FACE * 25 for a in range(MAX_ATTRIBUTES_PER_EVENT)}
        )
    assert 0.9 * MAX_BYTES < stored_bytes(summary) <= MAX_BYTES < ITEM_LIMIT


def test_values_that_json_escapes_are_counted_as_stored() -> None:
    summary = SeenSummary()
    for i in range(20_000):
        summary.add_values(f"e{i % 1_000}", {f"a{i % 50}": f"{i:05d}" + "\x01" * 95})
    assert stored_bytes(summary) <= MAX_BYTES


def test_a_summary_read_back_is_the_summary_written() -> None:
    summary = SeenSummary()
    for e in range(300):
        summary.add_values(FACE * 10 + str(e), {"\x00tier": f'"quoted" \\ {FACE}', "plan": "pro"})
    again = SeenSummary.loads(summary.dumps())
    assert again.events == summary.events
    assert again.dumps() == summary.dumps()
