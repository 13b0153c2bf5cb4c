"""The local Kinesis event source mapping behaves as Lambda's does, on moto's Kinesis and SQS."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from pia_cli.runner import FunctionError, KinesisMappingRunner, MappingSettings

REGION = "us-east-1"


class Stream:
    def __init__(self, shards: int = 1) -> None:
        self.kinesis = boto3.client("kinesis", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.kinesis.create_stream(StreamName="events", ShardCount=shards)
        self.arn = self.kinesis.describe_stream(StreamName="events")["StreamDescription"]["StreamARN"]
        self.queue_url = self.sqs.create_queue(QueueName="on-failure")["QueueUrl"]
        self.queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]

    def put(self, names: list[str], shard: int = 0) -> list[str]:
        shards = self.kinesis.list_shards(StreamARN=self.arn)["Shards"]
        start = shards[shard]["HashKeyRange"]["StartingHashKey"]
        return [
            self.kinesis.put_record(
                StreamARN=self.arn, Data=name.encode(), PartitionKey=name, ExplicitHashKey=start
            )["SequenceNumber"]
            for name in names
        ]

    def runner(
        self,
        invoke: Callable[[dict[str, Any]], Any],
        clock: Callable[[], float] = time.time,
        **settings: Any,
    ) -> KinesisMappingRunner:
        options: dict[str, Any] = {
            "stream_arn": self.arn,
            "function_arn": "arn:aws:lambda:us-east-1:123456789012:function:agg",
            "starting_position": "TRIM_HORIZON",
            "report_batch_item_failures": True,
            "on_failure_destination": self.queue_arn,
        }
        options.update(settings)
        return KinesisMappingRunner(
            MappingSettings(**options), invoke, kinesis=self.kinesis, sqs=self.sqs, clock=clock
        )

    def dead_letters(self) -> list[dict[str, Any]]:
        messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get(
            "Messages", []
        )
        return [json.loads(m["Body"]) for m in messages]


def names(event: dict[str, Any]) -> list[str]:
    return [base64.b64decode(r["kinesis"]["data"]).decode() for r in event["Records"]]


class Function:
    """Records what each invocation received; ``behave`` decides the response or raises."""

    def __init__(self, behave: Callable[[list[str], dict[str, Any]], Any] = lambda n, e: {}) -> None:
        self.calls: list[list[str]] = []
        self.behave = behave
        self.done: list[str] = []

    def __call__(self, event: dict[str, Any]) -> Any:
        received = names(event)
        self.calls.append(received)
        response = self.behave(received, event)
        failed = {f["itemIdentifier"] for f in (response or {}).get("batchItemFailures", [])}
        sequences = [r["kinesis"]["sequenceNumber"] for r in event["Records"]]
        self.done.extend(n for n, s in zip(received, sequences, strict=True) if s not in failed)
        return response


@pytest.fixture
def stream(aws: None) -> Stream:
    return Stream()


def test_a_partial_failure_resumes_from_the_lowest_failed_record(stream: Stream) -> None:
    sequences = stream.put([f"r{i}" for i in range(6)])
    attempts = {"n": 0}

    def behave(received: list[str], event: dict[str, Any]) -> Any:
        attempts["n"] += 1
        if attempts["n"] == 1:
            return {"batchItemFailures": [{"itemIdentifier": sequences[4]}, {"itemIdentifier": sequences[2]}]}
        return {"batchItemFailures": []}

    function = Function(behave)
    stats = stream.runner(function, batch_size=10).drain()

    assert function.calls == [[f"r{i}" for i in range(6)], ["r2", "r3", "r4", "r5"]]
    assert stats.retries == 1 and stats.partial_failures == 1
    assert stats.records_succeeded == 6
    assert stream.dead_letters() == []


def test_an_unknown_item_identifier_fails_the_whole_batch(stream: Stream) -> None:
    stream.put(["a", "b", "c"])
    responses = iter([{"batchItemFailures": [{"itemIdentifier": ""}]}, {}])
    function = Function(lambda n, e: next(responses))

    stream.runner(function).drain()

    assert function.calls == [["a", "b", "c"], ["a", "b", "c"]]


def test_batches_follow_the_batch_size_in_shard_order(stream: Stream) -> None:
    stream.put([f"r{i}" for i in range(7)])
    function = Function()

    stats = stream.runner(function, batch_size=3).drain()

    assert function.calls == [["r0", "r1", "r2"], ["r3", "r4", "r5"], ["r6"]]
    assert stats.invocations == 3 and stats.retries == 0


def test_latest_skips_what_was_on_the_stream_before_the_mapping(stream: Stream) -> None:
    stream.put(["old1", "old2"])
    function = Function()
    runner = stream.runner(function, starting_position="LATEST")
    runner.attach()
    stream.put(["new1"])

    runner.drain()

    assert function.calls == [["new1"]]


def test_exhausted_retries_send_the_batch_metadata_to_the_on_failure_queue(stream: Stream) -> None:
    first = stream.put(["a", "poison", "c"])
    later = stream.put(["d", "e"])

    def behave(received: list[str], event: dict[str, Any]) -> Any:
        if "poison" in received:
            raise FunctionError("boom")
        return {}

    function = Function(behave)
    stats = stream.runner(function, batch_size=3, maximum_retry_attempts=2).drain()

    assert function.calls == [["a", "poison", "c"]] * 3 + [["d", "e"]]
    (message,) = stream.dead_letters()
    assert message["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert message["requestContext"]["approximateInvokeCount"] == 3
    assert message["requestContext"]["functionArn"].endswith(":function:agg")
    assert message["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    info = message["KinesisBatchInfo"]
    assert info["shardId"] == "shardId-000000000000"
    assert (info["startSequenceNumber"], info["endSequenceNumber"]) == (first[0], first[2])
    assert info["batchSize"] == 3
    assert info["streamArn"] == stream.arn
    assert info["approximateArrivalOfFirstRecord"].endswith("Z")
    assert stats.records_discarded == 3 and stats.batches_discarded == 1
    assert function.done == ["d", "e"] and later


def test_partial_failures_that_never_clear_send_only_the_failed_tail(stream: Stream) -> None:
    sequences = stream.put(["a", "b", "c", "d"])
    function = Function(lambda n, e: {"batchItemFailures": [{"itemIdentifier": sequences[2]}]})

    stream.runner(function, maximum_retry_attempts=1).drain()

    assert function.calls == [["a", "b", "c", "d"], ["c", "d"]]
    (message,) = stream.dead_letters()
    info = message["KinesisBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (
        sequences[2],
        sequences[3],
        2,
    )
    assert "functionError" not in message["responseContext"]


def test_bisect_isolates_the_failing_record_without_using_retries(stream: Stream) -> None:
    sequences = stream.put([f"r{i}" for i in range(8)])

    def behave(received: list[str], event: dict[str, Any]) -> Any:
        if "r5" in received:
            raise FunctionError("r5 cannot be processed")
        return {}

    function = Function(behave)
    stats = stream.runner(
        function, batch_size=8, maximum_retry_attempts=1, bisect_on_function_error=True
    ).drain()

    assert function.calls == [
        [f"r{i}" for i in range(8)],
        ["r0", "r1", "r2", "r3"],
        ["r4", "r5", "r6", "r7"],
        ["r4", "r5"],
        ["r4"],
        ["r5"],
        ["r5"],
        ["r6", "r7"],
    ]
    assert sorted(function.done) == [f"r{i}" for i in range(8) if i != 5]
    assert stats.bisections == 3 and stats.retries == 1
    (message,) = stream.dead_letters()
    info = message["KinesisBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (
        sequences[5],
        sequences[5],
        1,
    )


def test_records_older_than_the_maximum_age_are_skipped_without_an_invocation(stream: Stream) -> None:
    stream.put(["a", "b"])
    function = Function()
    a_day_later = time.time() + 86_400

    stats = stream.runner(function, clock=lambda: a_day_later, maximum_record_age_seconds=60).drain()

    assert function.calls == []
    (message,) = stream.dead_letters()
    assert message["requestContext"]["condition"] == "RecordAgeExceeded"
    assert message["requestContext"]["approximateInvokeCount"] == 0
    assert "responseContext" not in message
    assert message["KinesisBatchInfo"]["batchSize"] == 2
    assert stats.records_discarded == 2


class ReshardedStream:
    """A closed parent shard and its two children. moto's SplitShard moves the parent's records
    into the children (Kinesis keeps them in the parent), so this stands in for Kinesis here."""

    def __init__(self) -> None:
        self.records = {
            "shardId-000000000000": ["p1", "p2", "p3"],
            "shardId-000000000001": ["c1a", "c1b"],
            "shardId-000000000002": ["c2a"],
        }

    def list_shards(self, **_: Any) -> dict[str, Any]:
        closed = {"StartingSequenceNumber": "1", "EndingSequenceNumber": "3"}
        return {
            "Shards": [
                {
                    "ShardId": "shardId-000000000001",
                    "ParentShardId": "shardId-000000000000",
                    "SequenceNumberRange": {"StartingSequenceNumber": "1"},
                },
                {
                    "ShardId": "shardId-000000000002",
                    "ParentShardId": "shardId-000000000000",
                    "SequenceNumberRange": {"StartingSequenceNumber": "1"},
                },
                {"ShardId": "shardId-000000000000", "SequenceNumberRange": closed},
            ]
        }

    def get_shard_iterator(
        self, ShardId: str, ShardIteratorType: str, StartingSequenceNumber: str = "0", **_: Any
    ) -> Any:
        start = int(StartingSequenceNumber) if ShardIteratorType == "AFTER_SEQUENCE_NUMBER" else 0
        return {"ShardIterator": f"{ShardId}|{start}"}

    def get_records(self, ShardIterator: str, Limit: int, **_: Any) -> Any:
        shard, start = ShardIterator.split("|")
        names = self.records[shard][int(start) : int(start) + Limit]
        end = int(start) + len(names)
        records = [
            {
                "Data": n.encode(),
                "SequenceNumber": str(int(start) + i + 1),
                "PartitionKey": n,
                "ApproximateArrivalTimestamp": 1.0e9,
            }
            for i, n in enumerate(names)
        ]
        closed = shard == "shardId-000000000000" and end == len(self.records[shard])
        return {"Records": records, "NextShardIterator": None if closed else f"{shard}|{end}"}


def test_a_split_shard_is_read_to_its_end_before_its_children() -> None:
    function = Function()
    settings = MappingSettings(
        stream_arn="arn:aws:kinesis:us-east-1:123456789012:stream/s",
        batch_size=2,
        starting_position="TRIM_HORIZON",
    )

    KinesisMappingRunner(settings, function, kinesis=ReshardedStream()).drain()

    assert function.calls[:2] == [["p1", "p2"], ["p3"]]
    assert sorted(function.calls[2:]) == [["c1a", "c1b"], ["c2a"]]


def test_batches_carry_lambdas_kinesis_event_shape(stream: Stream) -> None:
    sequences = stream.put(["x"])
    seen: list[dict[str, Any]] = []

    def function(event: dict[str, Any]) -> Any:
        seen.append(event)
        return {}

    stream.runner(function).drain()

    (record,) = seen[0]["Records"]
    assert record["eventID"] == f"shardId-000000000000:{sequences[0]}"
    assert record["eventSourceARN"] == stream.arn
    assert record["eventSource"] == "aws:kinesis" and record["eventName"] == "aws:kinesis:record"
    assert record["kinesis"]["partitionKey"] == "x"
    assert isinstance(record["kinesis"]["approximateArrivalTimestamp"], float)


def test_a_disabled_mapping_invokes_nothing(stream: Stream) -> None:
    stream.put(["a"])
    function = Function()

    stream.runner(function, enabled=False).drain()

    assert function.calls == []
