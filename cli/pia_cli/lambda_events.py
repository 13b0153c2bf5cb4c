"""Lambda's exact event shapes, built locally for the runner, replay, tests and benchmarks."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

REGION = "us-east-1"
ACCOUNT = "123456789012"


@dataclass(frozen=True)
class StreamRecord:
    data: bytes
    sequence_number: str
    partition_key: str = "pk"
    shard_id: str = "shardId-000000000000"
    arrival: float = 1_767_225_600.0


def record_data(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def kinesis_event(records: Sequence[StreamRecord], stream_name: str = "pia-events") -> dict[str, Any]:
    arn = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{stream_name}"
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r.partition_key,
                    "sequenceNumber": r.sequence_number,
                    "data": base64.b64encode(r.data).decode(),
                    "approximateArrivalTimestamp": r.arrival,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{r.shard_id}:{r.sequence_number}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": f"arn:aws:iam::{ACCOUNT}:role/pia-aggregator",
                "awsRegion": REGION,
                "eventSourceARN": arn,
            }
            for r in records
        ]
    }


def sequence(n: int, shard: int = 0) -> str:
    """A Kinesis-like sequence number: long, decimal, increasing within a shard."""
    return str(49_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000 + shard * 10**12 + n)
