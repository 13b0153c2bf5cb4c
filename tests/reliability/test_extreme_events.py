"""Scenario 12: random event streams at the edges of every field, in both formats (issue #15).

Each run draws a stream of ordinary events, some of them given one extreme value: a timestamp as
epoch milliseconds around the accepted bounds, thousands of digits, an exponent of nine digits or an
ISO 8601 time anywhere in years 1-9999 with any offset; a metric of nine-digit exponent, thousands
of digits, beyond or at the double range, tiny, NaN or infinite; a field one character over or at its
limit in 4-byte, combining or control characters; a record of the largest size Kinesis carries; a null
``event_timestamp`` beside an ``arrival_timestamp``; an unpaired surrogate. The stream goes through
Kinesis and the event source mapping as the template configures it, with bounded retries, so a
record that failed forever would end in the on-failure queue instead of hanging the run.

Each record's fate follows from the documented bounds alone (README, "Limits"; only the size limits'
values come from ``pia.core.limits``, which may change): accepted, then counted by the sequential
model (without an attribute too long for any rule to match), skipped (an event type too long for any
rule), or rejected naming one field. A date rule on the same events exercises the rollups, where an event dated in year 9999 once
overflowed the expiry computation.
"""

from __future__ import annotations

import calendar
import json
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pia.core.limits import MAX_ATTRIBUTE_VALUE, MAX_EVENT_TYPE, MAX_RECORD_BYTES, MAX_USER_ID
from pia_cli.runner import KinesisMappingRunner, MappingSettings
from tests.reliability.deployment import Deployment
from tests.reliability.ledger import ReliabilityLedger
from tests.reliability.reference import BASE_MILLIS, ReferenceModel, RuleSpec, StreamEvent
from tests.reliability.workload import CATALOG

pytestmark = [pytest.mark.reliability, pytest.mark.filterwarnings("ignore:No application metrics")]

FIRST_MS = 100_000_000_000
"""1973-03-03T09:46:40Z: the first accepted event time."""
END_MS = calendar.timegm((9000, 1, 1, 0, 0, 0)) * 1000
"""9000-01-01: the first refused one."""
MAX_DOUBLE = Decimal("1.7976931348623157e308")

RULES = (
    *CATALOG,
    RuleSpec(
        "trk_pair_spend",
        "buy",
        count=("greater_or_equal", 2),
        total=("not_equal", "-1"),
        reset=True,
        metric="amount",
    ),
)
"""The catalogue, plus a reset rule that sums two events before firing: two metrics at the double
range make a sum beyond it, which Pinpoint must still receive as a finite double."""
DATE_RULE = {
    "RuleType": "date",
    "EventName": "buy",
    "AttributeName": "na",
    "AttributeValue": "999",
    "Operator-C": "greater_or_equal",
    "Target-C": "1",
    "Operator-V": "greater",
    "Target-V": "0",
    "ResetWhenReachTarget": "no",
    "StartDate": "9999-99-99",
    "FinishDate": "9999-99-99",
    "MetricName": "amount",
    "OutputName": "trk_week_spender",
    "Window": "last 7 days",
}
USERS = ("user-0", "user-1", "\U0001f600" * MAX_USER_ID, "e\u0301\u202e\x00\u200b")
"""The last two: the longest user id in 4-byte characters (1,024 bytes, DynamoDB's sort key limit),
and a combining accent, a right-to-left override, a NUL and a zero-width space."""
KINDS = ("click", "course", "buy", "view", "scroll", "_session.start", "trk_course_x3")
AMOUNTS = ("0.5", "1.0", "2.5", "4.0", "4.5", "1.25")
ODD_CHARACTERS = ("x", "\U0001f600", "\x01", "\u0301", '"')


@dataclass
class Draft:
    """One record as the test builds it: JSON text assembled from raw literals, so numbers
    ``json.dumps`` cannot write (``1e999999999``, 5,000 digits, ``NaN``) reach the stream as typed."""

    n: int
    user: int
    kind: str
    generic: bool
    attributes: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, str] = field(default_factory=dict)
    timestamp: str = ""
    user_text: str | None = None
    event_type: str | None = None
    size: int | None = None
    expect: str | None = None
    skipped: bool = False
    ignored: tuple[str, ...] = ()
    mutation: str = "none"

    @property
    def user_id(self) -> str:
        return USERS[self.user]

    @property
    def time_field(self) -> str:
        return "timestamp" if self.generic else "event_timestamp"

    @property
    def user_field(self) -> str:
        return "user_id" if self.generic else "endpoint.User.UserId"

    def data(self) -> bytes:
        user = self.user_text or json.dumps(self.user_id)
        event_type = json.dumps(self.event_type or self.kind)
        attributes = json.dumps(self.attributes, ensure_ascii=False)
        metrics = "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in self.metrics.items()) + "}"
        if self.generic:
            text = (
                f'{{"user_id": {user}, "event_type": {event_type}, "timestamp": {self.timestamp}, '
                f'"attributes": {attributes}, "metrics": {metrics}, "endpoint_id": "ep-{self.user}"'
            )
        else:
            arrival = BASE_MILLIS + self.n * 1000 + 150
            text = (
                f'{{"event_type": {event_type}, "event_timestamp": {self.timestamp}, '
                f'"arrival_timestamp": {arrival}, "client": {{"client_id": "ep-{self.user}"}}, '
                f'"attributes": {attributes}, "metrics": {metrics}, '
                f'"endpoint": {{"User": {{"UserId": {user}}}}}'
            )
        if self.size is None:
            return (text + "}").encode()
        padding = self.size - len(text.encode()) - len(', "pad": ""}')
        return (text + f', "pad": "{"p" * padding}"}}').encode()

    def event(self) -> StreamEvent | None:
        """What the sequential model counts: nothing for a record that must be rejected or skipped,
        and no attribute that no rule could match."""
        if self.expect is not None or self.skipped:
            return None
        metrics = {name: Decimal(literal) for name, literal in self.metrics.items()}
        attributes = {k: v for k, v in self.attributes.items() if k not in self.ignored}
        return StreamEvent(self.user_id, self.kind, self.n, attributes, metrics)


Mutation = Callable[[Draft], None]


def _epoch_ms(value: int, as_text: bool) -> Mutation:
    def apply(draft: Draft) -> None:
        draft.mutation = "epoch milliseconds"
        draft.timestamp = json.dumps(str(value)) if as_text else str(value)
        if not (FIRST_MS <= value < END_MS and (value >= 0 or not as_text)):
            draft.expect = draft.time_field

    return apply


def _long_digits(digits: int, as_text: bool) -> Mutation:
    def apply(draft: Draft) -> None:
        draft.mutation = "timestamp of thousands of digits"
        literal = "7" * digits
        draft.timestamp = json.dumps(literal) if as_text else literal
        draft.expect = draft.time_field

    return apply


def _exponent_ms(mantissa: str, exponent: int) -> Mutation:
    def apply(draft: Draft) -> None:
        draft.mutation = "timestamp with an exponent"
        draft.timestamp = f"{mantissa}e{exponent}"
        if not FIRST_MS <= Decimal(draft.timestamp) < END_MS:
            draft.expect = draft.time_field

    return apply


def _iso(moment: datetime, offset: int | None, zulu: bool) -> Mutation:
    def apply(draft: Draft) -> None:
        draft.mutation = "ISO 8601 time"
        text = moment.isoformat()
        micros = calendar.timegm(moment.timetuple()) * 1_000_000 + moment.microsecond
        if offset is not None:
            sign, minutes = ("-" if offset < 0 else "+"), abs(offset)
            text += f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
            micros -= offset * 60_000_000
        elif zulu:
            text += "Z"
        draft.timestamp = json.dumps(text)
        if not FIRST_MS * 1000 <= micros < END_MS * 1000:
            draft.expect = draft.time_field

    return apply


def _null_event_time(draft: Draft) -> None:
    """Pinpoint's record then dates the event by arrival_timestamp; the generic one has nothing."""
    draft.mutation = "null event time"
    draft.timestamp = "null"
    if draft.generic:
        draft.expect = "timestamp"


def _metric(literal: str) -> Mutation:
    def apply(draft: Draft) -> None:
        draft.mutation = "extreme metric"
        draft.metrics["amount"] = literal
        value = Decimal(literal)
        if not value.is_finite() or value.copy_abs() > MAX_DOUBLE:
            draft.expect = "metrics.amount"

    return apply


def _attribute(length: int, character: str) -> Mutation:
    def apply(draft: Draft) -> None:
        draft.mutation = "attribute at or over its limit"
        draft.attributes["color"] = character * length
        if length > MAX_ATTRIBUTE_VALUE:
            draft.ignored = ("color",)

    return apply


def _long_user(draft: Draft) -> None:
    draft.mutation = "user id over its limit"
    draft.user_text = json.dumps("\U0001f600" * (MAX_USER_ID + 1))
    draft.expect = draft.user_field


def _long_event_type(draft: Draft) -> None:
    draft.mutation = "event type over its limit"
    draft.event_type = draft.kind + "\U0001f600" * (MAX_EVENT_TYPE + 1 - len(draft.kind))
    draft.skipped = True


def _size(total: int) -> Mutation:
    def apply(draft: Draft) -> None:
        draft.mutation = "record at or over the size limit"
        draft.size = total
        if total > MAX_RECORD_BYTES:
            draft.expect = "data"

    return apply


def _surrogate(draft: Draft) -> None:
    draft.mutation = "unpaired surrogate"
    draft.user_text = '"\\ud800"'
    draft.expect = "data"


KINESIS_RECORD_BYTES = 1024 * 1024
"""PutRecords' limit on data plus partition key: a larger record never reaches the aggregator."""
LARGEST = min(MAX_RECORD_BYTES, KINESIS_RECORD_BYTES - len("pk-0"))
RECORD_SIZES = tuple(
    size
    for size in (LARGEST - 1, LARGEST, MAX_RECORD_BYTES + 1)
    if size <= KINESIS_RECORD_BYTES - len("pk-0")
)
"""At the record limit, and one byte over it when Kinesis can carry that."""
EDGE_MOMENTS = [
    datetime(1, 1, 1),
    datetime(1973, 3, 3, 9, 46, 39, 999999),
    datetime(1973, 3, 3, 9, 46, 40),
    datetime(8999, 12, 31, 23, 59, 59, 999999),
    datetime(9000, 1, 1),
    datetime(9999, 12, 31, 23, 59, 59, 999999),
]
MUTATIONS: st.SearchStrategy[Mutation] = st.one_of(
    st.builds(
        _epoch_ms,
        st.one_of(
            st.integers(-(10**25), 10**25),
            st.integers(FIRST_MS - 3, FIRST_MS + 3),
            st.integers(END_MS - 3, END_MS + 3),
            st.just(253_402_300_799_999),
        ),
        st.booleans(),
    ),
    st.builds(_long_digits, st.integers(4_000, 6_000), st.booleans()),
    st.builds(
        _exponent_ms,
        st.sampled_from(("1", "-1", "1.7951652", "17951652")),
        st.one_of(st.integers(-999_999_999, 999_999_999), st.integers(4, 16)),
    ),
    st.builds(
        _iso,
        st.one_of(st.sampled_from(EDGE_MOMENTS), st.datetimes(datetime(1, 1, 1), datetime(9999, 12, 31))),
        st.one_of(st.none(), st.integers(-1439, 1439)),
        st.booleans(),
    ),
    st.just(_null_event_time),
    st.builds(
        _metric,
        st.one_of(
            st.sampled_from(
                (
                    "1.7976931348623157e308",
                    "-1.7976931348623157e308",
                    "1.7976931348623158e308",
                    "1e308",
                    "NaN",
                    "Infinity",
                    "-Infinity",
                    "1e-999999999",
                    "-0",
                    "0E+999999999",
                )
            ),
            st.builds(
                lambda m, e: f"{m}e{e}",
                st.sampled_from(("1", "-4.5", "9.99")),
                st.integers(-999_999_999, 999_999_999),
            ),
            st.integers(4_000, 6_000).map(lambda n: "9" * n),
            st.integers(1, 300).map(lambda n: "0." + "3" * n),
        ),
    ),
    st.builds(
        _attribute,
        st.sampled_from((MAX_ATTRIBUTE_VALUE, MAX_ATTRIBUTE_VALUE + 1)),
        st.sampled_from(ODD_CHARACTERS),
    ),
    st.just(_long_user),
    st.just(_long_event_type),
    st.builds(_size, st.sampled_from(RECORD_SIZES)),
    st.just(_surrogate),
)
RECORD = st.tuples(
    st.integers(0, len(USERS) - 1),
    st.sampled_from(KINDS),
    st.sampled_from(("red", "blue", "Red")),
    st.sampled_from(AMOUNTS),
    st.booleans(),
    st.one_of(st.none(), MUTATIONS, MUTATIONS),
)

ORDINARY = (0, "click", "red", "0.5", False, None)
ISSUE_15 = {
    "5,000-digit timestamp": (0, "click", "red", "0.5", True, _long_digits(5_000, True)),
    "metric 1e999999999": (1, "buy", "red", "0.5", False, _metric("1e999999999")),
    "end of year 9999": (1, "buy", "red", "0.5", True, _iso(datetime(9999, 12, 31, 23, 59, 59), None, True)),
    "sum beyond a double": (1, "buy", "red", "0.5", False, _metric("1.7976931348623157e308")),
}
"""The cases issue #15 reported, always run first: the first three held the shard or failed the
function, the last sent Pinpoint ``"Infinity"``."""


def draft(
    n: int, user: int, kind: str, color: str, amount: str, generic: bool, mutation: Mutation | None
) -> Draft:
    record = Draft(n, user, kind, generic, timestamp=str(BASE_MILLIS + n * 1000))
    if kind == "click":
        record.attributes["color"] = color
    elif kind == "buy":
        record.metrics["amount"] = amount
    elif kind == "view":
        record.metrics["seconds"] = amount
    if mutation is not None and not kind.startswith(("_", "trk_")):
        mutation(record)
    return record


def test_extreme_records_are_counted_or_rejected_by_field_and_never_fail_a_run(
    deploy: Callable[..., Deployment],
    ledger: ReliabilityLedger,
    examples: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    row = ledger.scenario(
        12,
        "Extreme event streams",
        "Each run (hypothesis) puts 1-40 records, Pinpoint and generic formats mixed, on a stream drained "
        "by the event source mapping with bounded retries and bisection, as the template configures it. "
        "Most records carry one extreme value: a timestamp in epoch milliseconds around the accepted "
        "bounds, of 4,000-6,000 digits or with a nine-digit exponent, an ISO 8601 time anywhere in "
        "years 1-9999 with any offset, a null event_timestamp; a metric with a nine-digit exponent, "
        "of thousands of digits, at or beyond the double range, tiny, NaN or infinite; an attribute, "
        "user id or event type at or one over its limit in 4-byte, combining or control characters; a "
        "record of the largest size Kinesis carries; an unpaired surrogate. Users include a 256-character id "
        "of 4-byte characters and one with a NUL and a right-to-left override. A date rule runs beside "
        "the catalogue. Checked: no function error, no batchItemFailures, nothing sent to the "
        "on-failure queue; each record the documented bounds refuse has one 'record rejected' log "
        "naming its field and every other has none (an over-long attribute is ignored, an over-long "
        "event type skipped); counters and Pinpoint equal the sequential model; "
        "every metric sent to Pinpoint is a finite double.",
    )

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
        print_blob=True,
    )
    @example(records=[ISSUE_15["5,000-digit timestamp"], ORDINARY], batch_size=2, seed=0)
    @example(records=[ISSUE_15["metric 1e999999999"], ORDINARY], batch_size=2, seed=0)
    @example(records=[ISSUE_15["end of year 9999"], ORDINARY], batch_size=2, seed=0)
    @example(records=[ISSUE_15["sum beyond a double"]] * 2, batch_size=2, seed=0)
    @given(
        records=st.lists(RECORD, min_size=1, max_size=40),
        batch_size=st.integers(1, 25),
        seed=st.integers(0, 2**32 - 1),
    )
    def run(records: list[Any], batch_size: int, seed: int) -> None:
        drafts = [draft(n, *record) for n, record in enumerate(records)]
        with deploy(random.Random(seed)) as stack:
            stack.create_stream(shards=1)
            stack.publish(RULES, extra_rows=[DATE_RULE])
            sent_metrics = watch_pinpoint_metrics(stack)
            by_sequence = put(stack, drafts)
            runner = KinesisMappingRunner(
                MappingSettings(
                    stream_arn=stack.stream_arn,
                    batch_size=batch_size,
                    starting_position="TRIM_HORIZON",
                    maximum_retry_attempts=2,
                    bisect_on_function_error=True,
                    report_batch_item_failures=True,
                ),
                stack.invoker(),
                kinesis=stack.kinesis,
            )
            caplog.clear()
            with caplog.at_level(logging.INFO):
                stats = runner.drain()
            differences: list[str] = []
            if stats.function_errors or stats.partial_failures or stats.records_discarded:
                differences.append(
                    f"{stats.function_errors} function errors, {stats.partial_failures} partial failures, "
                    f"{stats.records_discarded} records to the on-failure queue"
                )
            differences += rejections(caplog.records, by_sequence)
            model = ReferenceModel()
            for sequence, record in sorted(by_sequence.items()):
                event = record.event()
                if event is not None:
                    model.feed(RULES, "shardId-000000000000", sequence, event)
            differences += stack.compare(model, RULES).differences
            differences += [
                f"Pinpoint metric {m!r} is not a finite double" for m in sent_metrics if not finite(m)
            ]
            row.record(faults=sum(1 for d in drafts if d.mutation != "none"), differences=differences)
            assert not differences, differences[:5]

    run()
    assert row.runs >= examples and row.differences == 0, row.verdict()


def put(stack: Deployment, drafts: list[Draft]) -> dict[int, Draft]:
    """PutRecords in order, four at a time (a record can be 1 MiB, and PutRecords takes 5 MB); returns
    each record by its sequence number."""
    placed: dict[int, Draft] = {}
    for start in range(0, len(drafts), 4):
        chunk = drafts[start : start + 4]
        answer = stack.kinesis.put_records(
            StreamARN=stack.stream_arn,
            Records=[{"Data": d.data(), "PartitionKey": f"pk-{d.user}"} for d in chunk],
        )
        assert not answer.get("FailedRecordCount"), answer
        for record, result in zip(chunk, answer["Records"], strict=True):
            placed[int(result["SequenceNumber"])] = record
    return placed


def rejections(logs: list[logging.LogRecord], by_sequence: dict[int, Draft]) -> list[str]:
    found: list[str] = []
    rejected: dict[int, list[str]] = {}
    for log in logs:
        if log.getMessage() == "record rejected":
            rejected.setdefault(int(getattr(log, "sequence_number", "0")), []).append(
                getattr(log, "field", "")
            )
    for sequence, record in by_sequence.items():
        fields = rejected.get(sequence, [])
        wanted = [] if record.expect is None else [record.expect]
        if fields != wanted:
            found.append(f"{record.mutation} at {sequence}: rejected as {fields}, expected {wanted}")
    return found


def watch_pinpoint_metrics(stack: Deployment) -> list[Any]:
    """Every metric value of every PutEvents request, as botocore wrote it on the wire."""
    seen: list[Any] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        body = json.loads(params["body"] or b"{}", parse_constant=str)
        for batch in body.get("BatchItem", {}).values():
            for event in batch.get("Events", {}).values():
                seen.extend((event.get("Metrics") or {}).values())

    for function in ("aggregator", "action_relay"):
        stack.clients(function)("pinpoint").meta.events.register_first("before-call.pinpoint.*", record)
    return seen


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
