"""The Kinesis batch processor: decode per record, commit per batch, report what Lambda must redeliver.

What a user would notice: a poison record never holds the shard; a failed write is redelivered; and a
record after one that failed is never committed ahead of it, or the redelivery would skip the failed
record as a duplicate and lose a count.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord

from pia.counting.aggregator import InboundRecord
from pia.counting.counters import Position
from pia.counting.processor import Decoded, decode_record, process_batch
from pia_cli.lambda_events import StreamRecord, kinesis_event, record_data, sequence

SHARD = "shardId-000000000000"
BOOM = b"boom"


def event(*payloads: bytes) -> dict[str, Any]:
    return kinesis_event([StreamRecord(p, sequence(i + 1)) for i, p in enumerate(payloads)])


def good(user: str = "user-1") -> bytes:
    return record_data({"user_id": user, "event_type": "purchase", "timestamp": "2026-11-02T09:15:00Z"})


def decode(record: KinesisStreamRecord) -> Decoded:
    """The real decoder, but a record whose data is ``boom`` fails as a bug in decoding would."""
    if record.kinesis.data_as_bytes() == BOOM:
        raise RuntimeError("decoder bug")
    return decode_record(record)


class Commit:
    def __init__(self, fail: Sequence[int] = ()) -> None:
        self.fail = {Position(SHARD, int(sequence(n))) for n in fail}
        self.batches: list[list[int]] = []

    def __call__(self, records: Sequence[InboundRecord]) -> dict[Position, str]:
        self.batches.append([r.position.sequence for r in records])
        return {r.position: "throttled" for r in records if r.position in self.fail}


def reported(response: Any) -> list[str]:
    return [f["itemIdentifier"] for f in response["batchItemFailures"]]


def run(batch: dict[str, Any], commit: Commit) -> Any:
    return process_batch(batch, decode, commit)


def test_a_clean_batch_commits_once_and_reports_nothing() -> None:
    commit = Commit()
    assert run(event(good("a"), good("b"), good("c")), commit) == {"batchItemFailures": []}
    assert commit.batches == [[int(sequence(1)), int(sequence(2)), int(sequence(3))]]


def test_poison_and_skipped_records_are_neither_committed_nor_redelivered() -> None:
    commit = Commit()
    no_user = record_data({"event_type": "_session.start", "event_timestamp": 1793613900000})
    response = run(event(good(), b"not json", no_user, good()), commit)
    assert response == {"batchItemFailures": []}
    assert commit.batches == [[int(sequence(1)), int(sequence(4))]]


def test_records_whose_write_failed_are_reported_for_redelivery() -> None:
    commit = Commit(fail=[2])
    response = run(event(good("a"), good("b"), good("c")), commit)
    assert reported(response) == [sequence(2)]


def test_records_after_one_whose_decoding_failed_are_held_back_and_reported() -> None:
    commit = Commit()
    response = run(event(good("a"), BOOM, good("c"), b"not json", good("e")), commit)
    assert commit.batches == [[int(sequence(1))]], "nothing after the failed record may be committed"
    assert sorted(reported(response)) == [sequence(2), sequence(3), sequence(5)]


def test_a_batch_that_only_fails_is_reported_whole_not_raised() -> None:
    commit = Commit()
    response = run(event(BOOM, BOOM), commit)
    assert sorted(reported(response)) == [sequence(1), sequence(2)]
    assert commit.batches == []


def test_a_commit_that_raises_fails_the_invocation() -> None:
    def broken(records: Sequence[InboundRecord]) -> dict[Position, str]:
        raise ConnectionError("table unreachable")

    with pytest.raises(ConnectionError):
        process_batch(event(good()), decode, broken)
