"""Kinesis batches: decode per record, commit per batch, report what Lambda must redeliver.

Powertools reports partial failures per record; the engine's writes are coalesced per batch. So the
records are decoded one by one, the decoded ones are committed together, and only then does
Powertools' batch processor walk the batch with a record handler that fails the records Lambda must
redeliver, and build the partial-failure response from them. Only the public batch API is used
(``BatchProcessor``, ``process_partial_response``), so a Powertools upgrade cannot silently change
which records are retried.

Poison records are *not* failures: retrying them would hold the shard until they expire. They are
logged with their reason and coordinates and counted in a metric, and the shard moves on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from pia.core.events import RecordRejected, Skipped, decode_base64, parse_event
from pia.core.mapping import FieldMapping
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


def decode_record(
    record: KinesisStreamRecord, parallelization_factor: int = 1, mapping: FieldMapping | None = None
) -> Decoded:
    kinesis = record.kinesis
    try:
        event = parse_event(decode_base64(kinesis.data), mapping)
    except RecordRejected as rejected:
        # Kept until the batch commits: its traceback's frames would hold the decoded payload too.
        return rejected.with_traceback(None)
    if isinstance(event, Skipped):
        return event
    position = Position(lane_of(record, parallelization_factor), int(kinesis.sequence_number))
    return InboundRecord(position, event)


class BatchFailed(Exception):
    """Marks a record Lambda must redeliver, so Powertools reports it."""


def process_batch(
    event: Mapping[str, Any],
    decode: Callable[[KinesisStreamRecord], Decoded],
    commit: Callable[[Sequence[InboundRecord]], Mapping[Position, str]],
    context: LambdaContext | None = None,
) -> PartialItemFailureResponse:
    """``commit`` takes the batch's decoded records and returns the positions it could not write,
    with a reason; it raises only when the whole invocation must fail."""
    failed: dict[int, str] = {}
    decoded: list[InboundRecord] = []
    for raw in event["Records"]:
        record = KinesisStreamRecord(raw)
        try:
            result = decode(record)
        except Exception as exc:
            failed[int(record.kinesis.sequence_number)] = f"{type(exc).__name__}: {exc}"
            continue
        if isinstance(result, InboundRecord):
            decoded.append(result)
    held = _held_back(decoded, min(failed, default=None))
    accepted = [r for r in decoded if r.position not in held]
    not_written = commit(accepted) if accepted else {}
    failed.update((position.sequence, reason) for position, reason in {**held, **not_written}.items())

    def report(record: KinesisStreamRecord) -> None:
        reason = failed.get(int(record.kinesis.sequence_number))
        if reason is not None:
            raise BatchFailed(reason)

    reporter = BatchProcessor(event_type=EventType.KinesisDataStreams, raise_on_entire_batch_failure=False)
    return process_partial_response(
        event=dict(event), record_handler=report, processor=reporter, context=context
    )


def _held_back(decoded: Sequence[InboundRecord], first_failed: int | None) -> dict[Position, str]:
    """Records after one that failed are not committed.

    Lambda redelivers from the lowest reported failure, so they come back anyway; committed now, a
    later record of the same counter would lift the lane's mark past the failed record, and the
    redelivery would skip that record as a duplicate: a lost count.
    """
    if first_failed is None:
        return {}
    return {
        r.position: f"not committed: record {first_failed} before it in the batch failed"
        for r in decoded
        if r.position.sequence > first_failed
    }
