"""A local Kinesis event source mapping: what Lambda's poller does between a stream and a function.

moto's own mapping invokes the function once per PutRecord, in Docker, and knows nothing of
checkpoints, retries or on-failure destinations. This runner reads each shard in order with
GetShardIterator/GetRecords, builds Lambda's exact Kinesis event, invokes the handler in-process,
and then behaves as Lambda does with the mapping's settings:

- a batch is up to BatchSize records of one shard (and at most Lambda's 6 MB invocation payload);
- a complete success moves the checkpoint past the batch;
- ``batchItemFailures`` (with ReportBatchItemFailures) moves it to the lowest failed sequence
  number and the batch is retried from there; an empty, null or unknown ``itemIdentifier`` fails
  the whole batch, as Lambda does;
- a function error (the handler raises) retries the batch, or, with BisectBatchOnFunctionError,
  splits it in two and processes each half (a split does not use up a retry);
- a batch that fails more than MaximumRetryAttempts times, or records older than
  MaximumRecordAgeInSeconds, are skipped and their metadata goes to the on-failure destination
  in Lambda's format (``KinesisBatchInfo``).

Shards are polled round-robin, one batch at a time, and a child shard only after its parents are
finished. ParallelizationFactor batches run one after another here, which keeps the per-partition-key
order Lambda guarantees.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pia_cli.lambda_events import StreamRecord, kinesis_event

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
UNBOUNDED_RETRY_CAP = 1_000


@dataclass(frozen=True)
class MappingSettings:
    """An AWS::Lambda::EventSourceMapping's settings, with Lambda's defaults."""

    stream_arn: str
    function_arn: str = ""
    batch_size: int = 100
    starting_position: str = "LATEST"
    maximum_retry_attempts: int = -1
    maximum_record_age_seconds: int = -1
    bisect_on_function_error: bool = False
    parallelization_factor: int = 1
    batching_window_seconds: int = 0
    report_batch_item_failures: bool = False
    on_failure_destination: str | None = None
    enabled: bool = True

    @property
    def stream_name(self) -> str:
        return self.stream_arn.rsplit("/", 1)[-1]

    @property
    def region(self) -> str:
        return self.stream_arn.split(":")[3]

    @property
    def account(self) -> str:
        return self.stream_arn.split(":")[4]


class RunnerStuck(RuntimeError):
    """A batch keeps failing under unbounded retries: locally, better stopped than spinning."""


class FunctionError(Exception):
    """The handler raised: Lambda reports ``FunctionError: Unhandled`` and the batch failed."""


Invoke = Callable[[dict[str, Any]], Any]


@dataclass
class RunnerStats:
    invocations: int = 0
    retries: int = 0
    bisections: int = 0
    function_errors: int = 0
    partial_failures: int = 0
    records_read: int = 0
    records_succeeded: int = 0
    records_discarded: int = 0
    batches_discarded: int = 0
    on_failure_messages: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Segment:
    records: list[StreamRecord]
    arrivals: list[float]
    attempts: int = 0
    last_request_id: str = ""
    last_error: bool = False


@dataclass
class _Shard:
    shard_id: str
    parents: tuple[str, ...]
    checkpoint: str | None = None
    position: str = "TRIM_HORIZON"
    iterator: str | None = None
    closed: bool = False
    finished: bool = False


class KinesisMappingRunner:
    def __init__(
        self,
        settings: MappingSettings,
        invoke: Invoke,
        *,
        kinesis: Any,
        sqs: Any | None = None,
        role_arn: str | None = None,
        clock: Callable[[], float] = time.time,
        on_batch: Callable[[str, int, RunnerStats], None] | None = None,
    ) -> None:
        self.settings = settings
        self._invoke = invoke
        self._kinesis = kinesis
        self._sqs = sqs
        self._role_arn = role_arn
        self._clock = clock
        self._on_batch = on_batch
        self._shards: dict[str, _Shard] = {}
        self._queue_url: str | None = None
        self.stats = RunnerStats()

    def attach(self) -> None:
        """Take the starting positions, as Lambda does when the mapping is created."""
        for shard in self._list_shards():
            shard_id = shard["ShardId"]
            parents = tuple(p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if p)
            state = _Shard(shard_id, parents)
            if self.settings.starting_position == "LATEST":
                last = self._last_sequence(shard_id)
                if last is not None:
                    state.checkpoint, state.position = last, "AFTER_SEQUENCE_NUMBER"
            self._shards[shard_id] = state

    def drain(self) -> RunnerStats:
        """Process every shard until none has unread records; returns the running totals."""
        if not self.settings.enabled:
            return self.stats
        if not self._shards:
            self.attach()
        while True:
            progressed = False
            for state in list(self._shards.values()):
                if not state.finished and all(self._parent_done(p) for p in state.parents):
                    progressed = self._poll(state) or progressed
            if not progressed and not self._discover_new_shards():
                return self.stats

    def _parent_done(self, shard_id: str) -> bool:
        parent = self._shards.get(shard_id)
        return parent is None or parent.finished

    def _list_shards(self) -> list[dict[str, Any]]:
        shards: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"StreamARN": self.settings.stream_arn}
        while True:
            page = self._kinesis.list_shards(**kwargs)
            shards.extend(page.get("Shards", []))
            token = page.get("NextToken")
            if not token:
                return shards
            kwargs = {"NextToken": token}

    def _discover_new_shards(self) -> bool:
        """Pick up shards created by a reshard and notice closed ones; True when anything changed."""
        changed = False
        for shard in self._list_shards():
            state = self._shards.get(shard["ShardId"])
            if state is None:
                parents = tuple(
                    p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if p
                )
                state = self._shards[shard["ShardId"]] = _Shard(shard["ShardId"], parents)
                changed = True
            closed = "EndingSequenceNumber" in shard.get("SequenceNumberRange", {})
            if closed and not state.closed:
                state.closed = changed = True
        return changed

    def _last_sequence(self, shard_id: str) -> str | None:
        iterator = self._kinesis.get_shard_iterator(
            StreamARN=self.settings.stream_arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        last: str | None = None
        while iterator:
            page = self._kinesis.get_records(
                StreamARN=self.settings.stream_arn, ShardIterator=iterator, Limit=10_000
            )
            if page["Records"]:
                last = page["Records"][-1]["SequenceNumber"]
            if not page["Records"] or page.get("MillisBehindLatest", 0) == 0:
                break
            iterator = page.get("NextShardIterator")
        return last

    def _read(self, state: _Shard, limit: int) -> tuple[list[dict[str, Any]], str | None]:
        """The shard's next records after the checkpoint, and the iterator that follows them."""
        iterator = state.iterator
        if iterator is None:
            kwargs: dict[str, Any] = {
                "StreamARN": self.settings.stream_arn,
                "ShardId": state.shard_id,
                "ShardIteratorType": state.position,
            }
            if state.checkpoint is not None:
                kwargs["StartingSequenceNumber"] = state.checkpoint
            iterator = self._kinesis.get_shard_iterator(**kwargs)["ShardIterator"]
        page = self._kinesis.get_records(
            StreamARN=self.settings.stream_arn, ShardIterator=iterator, Limit=limit
        )
        return page["Records"], page.get("NextShardIterator")

    def _poll(self, state: _Shard) -> bool:
        """Invoke the function with the shard's next batch; False when nothing changed."""
        read, following = self._read(state, self.settings.batch_size)
        state.iterator = following
        if not read:
            if following is None or state.closed:
                state.finished = True
                return True
            return False
        records = self._fit_payload(read)
        if len(records) < len(read):
            state.iterator = None
        self.stats.records_read += len(records)
        segment = _Segment(
            [
                StreamRecord(
                    data=r["Data"],
                    sequence_number=r["SequenceNumber"],
                    partition_key=r["PartitionKey"],
                    shard_id=state.shard_id,
                    arrival=_epoch(r["ApproximateArrivalTimestamp"]),
                )
                for r in records
            ],
            [_epoch(r["ApproximateArrivalTimestamp"]) for r in records],
        )
        self._process(state.shard_id, segment)
        state.checkpoint, state.position = records[-1]["SequenceNumber"], "AFTER_SEQUENCE_NUMBER"
        if self._on_batch is not None:
            self._on_batch(state.shard_id, len(records), self.stats)
        return True

    def _fit_payload(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        size, kept = 1024, list[dict[str, Any]]()
        for record in records:
            size += len(record["Data"]) * 4 // 3 + 700
            if kept and size > MAX_PAYLOAD_BYTES:
                break
            kept.append(record)
        return kept

    def _process(self, shard_id: str, first: _Segment) -> None:
        pending: deque[_Segment] = deque([first])
        while pending:
            segment = pending.popleft()
            segment = self._drop_expired(shard_id, segment)
            if not segment.records:
                continue
            outcome, failed_from = self._invoke_once(segment)
            if outcome == "ok":
                self.stats.records_succeeded += len(segment.records)
                continue
            if outcome == "partial":
                self.stats.partial_failures += 1
                self.stats.records_succeeded += failed_from
                rest = _Segment(
                    segment.records[failed_from:], segment.arrivals[failed_from:], segment.attempts
                )
                rest.last_request_id = segment.last_request_id
                self._retry_or_discard(shard_id, rest, pending)
                continue
            if outcome == "error" and self.settings.bisect_on_function_error and len(segment.records) > 1:
                self.stats.bisections += 1
                middle = len(segment.records) // 2
                halves = [
                    _Segment(segment.records[:middle], segment.arrivals[:middle], segment.attempts),
                    _Segment(segment.records[middle:], segment.arrivals[middle:], segment.attempts),
                ]
                pending.extendleft(reversed(halves))
                continue
            self._retry_or_discard(shard_id, segment, pending)

    def _retry_or_discard(self, shard_id: str, segment: _Segment, pending: deque[_Segment]) -> None:
        if self.settings.maximum_retry_attempts < 0 and segment.attempts >= UNBOUNDED_RETRY_CAP:
            first = segment.records[0].sequence_number
            raise RunnerStuck(
                f"{shard_id}: the batch from {first} failed {segment.attempts + 1} times; with unbounded "
                "retries Lambda would hold the shard until the records expire"
            )
        if segment.attempts >= self.settings.maximum_retry_attempts >= 0:
            self._discard(shard_id, segment, "RetryAttemptsExhausted")
            return
        self.stats.retries += 1
        pending.appendleft(
            _Segment(
                segment.records,
                segment.arrivals,
                segment.attempts + 1,
                segment.last_request_id,
                segment.last_error,
            )
        )

    def _drop_expired(self, shard_id: str, segment: _Segment) -> _Segment:
        """Lambda skips records older than MaximumRecordAgeInSeconds (they sit at the batch's start)."""
        max_age = self.settings.maximum_record_age_seconds
        if max_age < 0:
            return segment
        now = self._clock()
        expired = 0
        while expired < len(segment.arrivals) and now - segment.arrivals[expired] > max_age:
            expired += 1
        if expired == 0:
            return segment
        old = _Segment(segment.records[:expired], segment.arrivals[:expired], segment.attempts)
        old.last_request_id, old.last_error = segment.last_request_id, segment.last_error
        self._discard(shard_id, old, "RecordAgeExceeded")
        rest = _Segment(segment.records[expired:], segment.arrivals[expired:], segment.attempts)
        rest.last_request_id, rest.last_error = segment.last_request_id, segment.last_error
        return rest

    def _invoke_once(self, segment: _Segment) -> tuple[str, int]:
        """('ok', n), ('partial', index of the lowest failed record), or ('error' | 'failed', 0)."""
        event = kinesis_event(
            segment.records,
            stream_name=self.settings.stream_name,
            region=self.settings.region,
            account=self.settings.account,
            role_arn=self._role_arn,
        )
        segment.last_request_id = str(uuid.uuid4())
        self.stats.invocations += 1
        try:
            response = self._invoke(event)
        except FunctionError:
            self.stats.function_errors += 1
            segment.last_error = True
            return "error", 0
        segment.last_error = False
        if not self.settings.report_batch_item_failures:
            return "ok", len(segment.records)
        failures = response.get("batchItemFailures") if isinstance(response, Mapping) else None
        if not failures:
            return "ok", len(segment.records)
        positions = {r.sequence_number: i for i, r in enumerate(segment.records)}
        indexes: list[int] = []
        for failure in failures:
            identifier = failure.get("itemIdentifier") if isinstance(failure, Mapping) else None
            if not identifier or identifier not in positions:
                log.warning(
                    "batchItemFailures names %r, not a record of the batch: whole batch failed", identifier
                )
                return "failed", 0
            indexes.append(positions[identifier])
        return "partial", min(indexes)

    def _discard(self, shard_id: str, segment: _Segment, condition: str) -> None:
        self.stats.records_discarded += len(segment.records)
        self.stats.batches_discarded += 1
        message = self._failure_record(shard_id, segment, condition)
        self.stats.on_failure_messages.append(message)
        log.warning(
            "%d records of %s skipped (%s), from %s to %s",
            len(segment.records),
            shard_id,
            condition,
            segment.records[0].sequence_number,
            segment.records[-1].sequence_number,
        )
        destination = self.settings.on_failure_destination
        if destination is None:
            return
        if ":sqs:" not in destination or self._sqs is None:
            raise NotImplementedError(f"on-failure destination {destination}: only SQS queues are emulated")
        if self._queue_url is None:
            parts = destination.split(":")
            self._queue_url = self._sqs.get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])[
                "QueueUrl"
            ]
        self._sqs.send_message(QueueUrl=self._queue_url, MessageBody=json.dumps(message))

    def _failure_record(self, shard_id: str, segment: _Segment, condition: str) -> dict[str, Any]:
        """The document Lambda sends to a Kinesis mapping's on-failure destination."""
        message: dict[str, Any] = {
            "requestContext": {
                "requestId": segment.last_request_id or str(uuid.uuid4()),
                "functionArn": self.settings.function_arn,
                "condition": condition,
                "approximateInvokeCount": segment.attempts + 1 if segment.last_request_id else 0,
            },
            "version": "1.0",
            "timestamp": _iso(self._clock()),
            "KinesisBatchInfo": {
                "shardId": shard_id,
                "startSequenceNumber": segment.records[0].sequence_number,
                "endSequenceNumber": segment.records[-1].sequence_number,
                "approximateArrivalOfFirstRecord": _iso(segment.arrivals[0]),
                "approximateArrivalOfLastRecord": _iso(segment.arrivals[-1]),
                "batchSize": len(segment.records),
                "streamArn": self.settings.stream_arn,
            },
        }
        if segment.last_request_id:
            response: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
            if segment.last_error:
                response["functionError"] = "Unhandled"
            message["responseContext"] = response
        return message


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def function_errors(invoke: Callable[[dict[str, Any]], Any]) -> Invoke:
    """Adapts an in-process handler call: any exception it raises is a function error, as in Lambda."""

    def call(event: dict[str, Any]) -> Any:
        try:
            return invoke(event)
        except Exception as exc:
            log.error("function error: %s: %s", type(exc).__name__, exc, exc_info=True)
            raise FunctionError(f"{type(exc).__name__}: {exc}") from exc

    return call
