"""Lambda's exact event shapes, built locally for the runner, replay, tests and benchmarks."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

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


def kinesis_event(
    records: Sequence[StreamRecord],
    stream_name: str = "pia-events",
    *,
    region: str = REGION,
    account: str = ACCOUNT,
    role_arn: str | None = None,
) -> dict[str, Any]:
    arn = f"arn:aws:kinesis:{region}:{account}:stream/{stream_name}"
    role = role_arn or f"arn:aws:iam::{account}:role/pia-aggregator"
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
                "invokeIdentityArn": role,
                "awsRegion": region,
                "eventSourceARN": arn,
            }
            for r in records
        ]
    }


def sequence(n: int, shard: int = 0) -> str:
    """A Kinesis-like sequence number: long, decimal, increasing within a shard."""
    return str(
        49_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000 + shard * 10**12 + n
    )


def schedule_event(rule_arn: str, time: str, region: str = REGION, account: str = ACCOUNT) -> dict[str, Any]:
    """What an EventBridge schedule rule sends its target (``time`` is ISO 8601, to the second)."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": time,
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


def s3_object_created_event(
    bucket: str,
    key: str,
    *,
    size: int,
    etag: str,
    time: str,
    version_id: str | None = None,
    region: str = REGION,
) -> dict[str, Any]:
    """The S3 ``ObjectCreated:Put`` notification a bucket sends a function (the key URL-encoded)."""
    s3_object: dict[str, Any] = {"key": quote_plus(key, safe="/"), "size": size, "eTag": etag.strip('"')}
    if version_id:
        s3_object["versionId"] = version_id
    s3_object["sequencer"] = f"{uuid.uuid4().int % 16**18:018X}"
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": region,
                "eventTime": time,
                "eventName": "ObjectCreated:Put",
                "userIdentity": {"principalId": "AWS:AIDALOCALUSER"},
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {
                    "x-amz-request-id": f"{uuid.uuid4().hex[:16].upper()}",
                    "x-amz-id-2": "local",
                },
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "pia-rules-upload",
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": {"principalId": "A3LOCALOWNER"},
                        "arn": f"arn:aws:s3:::{bucket}",
                    },
                    "object": s3_object,
                },
            }
        ]
    }
