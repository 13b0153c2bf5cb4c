"""An event the parser accepts can be stored, whatever its date: the rollup's day and expiry in any
zone and at the longest retention, and the raw archive's round trip (issue #15: an event dated at
the end of year 9999 passed the parser and then overflowed the rollup expiry, a function error)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from pia.core.events import Event, RecordRejected, parse_event
from pia.counting.aggregator import InboundRecord
from pia.counting.counters import Position
from pia.timeseries.archive import decode, encode
from pia.timeseries.rollups import DayTotal, SeriesRollup, load_zone, local_day
from pia.timeseries.store import rollup_item

LONGEST_RETENTION_DAYS = 3650
"""template.yaml's MaxValue for RawEventRetentionDays."""
ZONES = [load_zone(name) for name in ("Pacific/Kiritimati", "Etc/GMT+12", "UTC")]
NOW = int(datetime(2026, 11, 30, tzinfo=UTC).timestamp())

instants = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
) | st.sampled_from([datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)])
timestamps = st.one_of(
    instants.map(lambda moment: moment.isoformat()),
    instants.map(lambda moment: moment.isoformat().replace("+00:00", "Z")),
    instants.map(lambda moment: round(moment.timestamp() * 1000)),
    instants.map(lambda moment: str(round(moment.timestamp() * 1000))),
)


def stored(event: Event) -> None:
    """Everything the time-series path does with an accepted event's date and metric."""
    for zone in ZONES:
        day = local_day(event.timestamp, zone)
        state = SeriesRollup(
            series="s", user_id=event.user_id, version=1, days={day: DayTotal(1, event.metrics["amount"])}
        )
        item = rollup_item(state, NOW, LONGEST_RETENTION_DAYS)
        assert int(item["ttl"]["N"]) > NOW
    record = InboundRecord(Position("shardId-000000000000", 1), event)
    assert decode(encode([record])).events == ((record.position, event),)


@settings(max_examples=300, deadline=None)
@given(timestamp=timestamps)
def test_every_accepted_timestamp_can_be_stored_in_any_zone_at_the_longest_retention(
    timestamp: str | int,
) -> None:
    payload = json.dumps(
        {"user_id": "u", "event_type": "buy", "timestamp": timestamp, "metrics": {"amount": 1}}
    ).encode()
    try:
        event = parse_event(payload)
    except RecordRejected as rejection:
        assert rejection.field == "timestamp"
        return
    assert isinstance(event, Event)
    stored(event)


def test_the_edges_of_the_calendar_are_rejected_or_storable() -> None:
    for timestamp in ("9999-12-31T23:59:59.999999Z", "0001-01-01T00:00:00Z", "9999-12-31", "0001-01-01"):
        payload = json.dumps(
            {"user_id": "u", "event_type": "buy", "timestamp": timestamp, "metrics": {"amount": 1}}
        ).encode()
        try:
            event = parse_event(payload)
        except RecordRejected:
            continue
        assert isinstance(event, Event)
        stored(event)


def test_an_archived_line_dated_outside_the_accepted_range_is_a_bad_line_not_an_error() -> None:
    """Lines written before the parser bounded dates must not reach the backfill's arithmetic."""
    good = Event("u", "buy", datetime(2026, 3, 1, tzinfo=UTC), {}, {"amount": Decimal(1)})
    far = Event("u", "buy", datetime(9999, 12, 31, 23, 59, tzinfo=UTC), {}, {"amount": Decimal(1)})
    data = encode(
        [InboundRecord(Position("shardId-000000000000", n), e) for n, e in enumerate((good, far), 1)]
    )
    archived = decode(data)
    assert [event for _, event in archived.events] == [good]
    assert archived.bad_lines == 1


def test_events_dated_ahead_of_the_batch_count_on_its_day_so_a_client_clock_cannot_grow_a_rollup() -> None:
    """A hostile or broken client stamping each event on a different far-future day (any date the
    parser accepts, up to year 9000) once added a day per event to the rollup: past about 13,000 days
    the item outgrew DynamoDB's 400 KB and its user's batches failed on every delivery, and a day in
    year 8999 kept the item (TTL) and its due moment for 7,000 years. Like a Cap's window, a rollup
    takes an event's date never later than the clock of the batch that counts it."""
    from datetime import timedelta

    from pia.aws.state_table import item_size
    from pia.timeseries.rollups import SeriesPlan, absorb
    from tests.unit.timeseries.test_due import rolling
    from tests.unit.timeseries.test_evaluation import event

    rule = rolling("greater_or_equal", "1", 30)
    plan = SeriesPlan(rule.series, (rule,), "", datetime(1970, 1, 1, tzinfo=UTC))
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    zone = ZONES[0]
    today = local_day(now, zone)
    hostile = [
        (Position("shardId-000000000000", n), event("u", now + timedelta(days=n * 163)))
        for n in range(1, 15_001)
    ]
    step = absorb(
        SeriesRollup(rule.series, "u"),
        plan,
        [(Position("shardId-000000000000", 0), event("u", now)), *hostile],
        zone=zone,
        oldest=today - timedelta(days=LONGEST_RETENTION_DAYS),
        now=int(now.timestamp()),
        lane_retention_seconds=90_000,
    )
    assert step.applied == 15_001, "every event still counts"
    assert set(step.state.days) == {today} and step.state.days[today].count == 15_001
    item = rollup_item(step.state, int(now.timestamp()), LONGEST_RETENTION_DAYS)
    assert item_size(item) < 2_000
    assert int(item["ttl"]["N"]) <= int(now.timestamp()) + (LONGEST_RETENTION_DAYS + 2) * 86_400


def test_text_holding_a_unicode_line_break_reads_back_from_the_archive_as_written() -> None:
    """JSON lines end at ``\\n`` only; U+0085, U+2028 and the other breaks Python's ``splitlines``
    knows are text inside a line, as Athena and DuckDB read them."""
    value = "a\x85b\u2028c\u2029d\x1ce\x0bf\x0cg\rh"
    event = Event(
        user_id="u\u2028",
        event_type="purchase",
        timestamp=datetime(2026, 3, 1, tzinfo=UTC),
        attributes={"plan": value},
        metrics={},
    )

    raw = decode(encode([InboundRecord(Position("shardId-000000000000", 1), event)]))

    assert raw.bad_lines == 0
    ((_, found),) = raw.events
    assert (found.user_id, found.attributes) == ("u\u2028", {"plan": value})
