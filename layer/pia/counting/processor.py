"""Powertools' Kinesis batch processor, extended to decode per record and commit per batch.

Powertools reports partial failures per record; the engine's writes are coalesced per batch. This
subclass keeps Powertools' response building and failure bookkeeping, runs the per-record handler
for decoding only, and after the last record commits the batch and moves the records whose writes
failed into Powertools' failure list, so Lambda retries from the lowest of them.

Poison records are *not* failures: retrying them would hold the shard until they expire. They are
logged with their reason and coordinates and counted in a metric, and the shard moves on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord

from pia.core.events import RecordRejected, Skipped, decode_base64, parse_event
from pia.counting.aggregator import InboundRecord
from pia.counting.counters import Position

Decoded = InboundRecord | Skipped | RecordRejected
"""A record's fate: counted, skipped by design, or rejected as poison with the field at fault."""


def lane_of(record: KinesisStreamRecord, parallelization_factor: int) -> str:
    """The ordering unit Lambda guarantees: the shard, or shard and partition key when a shard is
    processed by several concurrent batches."""
    shard = record.event_id.split(":", 1)[0]
    if parallelization_factor > 1:
        return f"{shard}/{record.kinesis.partition_key}"
    return shard


def decode_record(record: KinesisStreamRecord, parallelization_factor: int = 1) -> Decoded:
    kinesis = record.kinesis
    try:
        event = parse_event(decode_base64(kinesis.data))
    except RecordRejected as rejected:
        # Kept until the batch commits: its traceback's frames would hold the decoded payload too.
        return rejected.with_traceback(None)
    if isinstance(event, Skipped):
        return event
    position = Position(lane_of(record, parallelization_factor), int(kinesis.sequence_number))
    return InboundRecord(position, event)


class BatchFailed(Exception):
    """Marks a decoded record whose batch write failed, so Powertools reports it for retry."""


class CoalescingKinesisProcessor(BatchProcessor):
    def __init__(self, commit: Callable[[Sequence[InboundRecord]], dict[Position, str]]) -> None:
        super().__init__(event_type=EventType.KinesisDataStreams, raise_on_entire_batch_failure=False)
        self._commit = commit
        self.decoded: list[tuple[dict[str, Any], Decoded]] = []

    def _prepare(self) -> None:
        super()._prepare()  # type: ignore[no-untyped-call]
        self.decoded = []

    def success_handler(self, record: Any, result: Any) -> Any:
        self.decoded.append((record, result))
        return super().success_handler(record, result)

    def _held_back(self) -> dict[Position, str]:
        """Records after one whose handler failed are not committed.

        Lambda redelivers from the lowest reported failure, so they come back anyway; committed now,
        a later record of the same counter would lift the lane's mark past the failed record, and the
        redelivery would skip that record as a duplicate: a lost count.
        """
        if not self.fail_messages:
            return {}
        first = min(int(message.kinesis.sequence_number) for message in self.fail_messages)  # type: ignore[union-attr]
        return {
            result.position: f"not committed: record {first} before it in the batch failed"
            for _, result in self.decoded
            if isinstance(result, InboundRecord) and result.position.sequence > first
        }

    def _clean(self) -> None:
        held = self._held_back()
        accepted = [r for _, r in self.decoded if isinstance(r, InboundRecord) and r.position not in held]
        failed = {**held, **(self._commit(accepted) if accepted else {})}
        if failed:
            for raw, result in self.decoded:
                if isinstance(result, InboundRecord) and result.position in failed:
                    error = BatchFailed(failed[result.position])
                    self.success_messages.remove(raw)  # type: ignore[arg-type]
                    self.failure_handler(KinesisStreamRecord(raw), (BatchFailed, error, None))
        super()._clean()  # type: ignore[no-untyped-call]
