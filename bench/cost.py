"""Dollars per million events for the aggregator path, from the measured figures and public prices.

Prices are us-east-1 list prices, quoted as of the date below; this machine cannot reach the web, so
they were taken from what AWS's pricing pages said at that date (stored copies, and the published
November 2024 DynamoDB on-demand reduction), not fetched live. Fixed charges that do not grow with
events (Kinesis stream-hours, storage, CloudWatch) are left out: they are the same for both paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from bench.runs import Run

PRICES_AS_OF = "2025-06"
MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class Price:
    what: str
    usd: Decimal
    per: str


PRICES: dict[str, Price] = {
    "dynamodb_write": Price("DynamoDB on-demand write request unit", Decimal("0.625"), "million WRU"),
    "dynamodb_read": Price("DynamoDB on-demand read request unit", Decimal("0.125"), "million RRU"),
    "lambda_gb_second": Price("Lambda duration, arm64", Decimal("0.0000133334"), "GB-second"),
    "lambda_request": Price("Lambda requests", Decimal("0.20"), "million requests"),
    "kinesis_in": Price("Kinesis on-demand data in (each record rounded up to 1 KB)", Decimal("0.08"), "GB"),
    "kinesis_out": Price("Kinesis on-demand data retrieved", Decimal("0.04"), "GB"),
    "s3_put": Price(
        "S3 Standard PUT requests (raw events, one object per batch)", Decimal("0.005"), "1,000 requests"
    ),
    "pinpoint_endpoint": Price(
        "Pinpoint UpdateEndpoint(s)Batch (no per-request charge)", Decimal("0"), "call"
    ),
    "pinpoint_event": Price(
        "Pinpoint events ingested (PutEvents, reset rules)", Decimal("1.00"), "million events"
    ),
    "eventbridge_event": Price(
        "EventBridge custom events (per 64 KB entry)", Decimal("1.00"), "million events"
    ),
}
LAMBDA_MEMORY_MB = 512
"""template.yaml Globals: MemorySize 512, arm64."""
NETWORK_MS_PER_ROUND_TRIP = Decimal(5)
"""Model only: in-region DynamoDB and Pinpoint round trips take milliseconds; in-process moto does not."""
GB = Decimal(1024**3)


def _price(name: str) -> Decimal:
    return PRICES[name].usd


@dataclass(frozen=True)
class CostLine:
    item: str
    usd_per_million_events: Decimal
    measured: bool = True


def per_million(run: Run, record_bytes: int, *, memory_mb: int = LAMBDA_MEMORY_MB) -> list[CostLine]:
    """Measured lines, their total, then two modelled what-ifs (network latency, EventBridge)."""
    scale = MILLION / Decimal(run.events)
    gb = Decimal(memory_mb) / 1024
    gb_second = _price("lambda_gb_second")
    kinesis_gb_in = Decimal(-(-record_bytes // 1024) * 1024) * MILLION / GB
    kinesis_gb_out = Decimal(record_bytes) * MILLION / GB
    measured = [
        CostLine(
            "DynamoDB writes", Decimal(run.usage.write_units) * scale * _price("dynamodb_write") / MILLION
        ),
        CostLine(
            "DynamoDB reads", Decimal(str(run.usage.read_units)) * scale * _price("dynamodb_read") / MILLION
        ),
        CostLine(
            "Lambda duration (measured wall time, moto in-process)",
            Decimal(str(run.wall_seconds)) * scale * gb * gb_second,
        ),
        CostLine("Lambda requests", Decimal(run.invocations) * scale * _price("lambda_request") / MILLION),
        CostLine(
            "Kinesis data in and out",
            kinesis_gb_in * _price("kinesis_in") + kinesis_gb_out * _price("kinesis_out"),
        ),
        CostLine("S3 PUT requests", Decimal(run.usage.calls_to("s3")) * scale * _price("s3_put") / 1000),
        CostLine("Pinpoint endpoint updates (no per-call charge)", Decimal(0)),
    ]
    total = sum((line.usd_per_million_events for line in measured), Decimal(0))
    network_seconds = Decimal(run.usage.calls) * NETWORK_MS_PER_ROUND_TRIP / 1000
    modelled_duration = (Decimal(str(run.cpu_seconds)) + network_seconds) * scale * gb * gb_second
    if run.path == "baseline":
        outputs = Decimal(run.usage.calls_to("pinpoint"))
    else:
        outputs = Decimal(str(run.crossings_per_event)) * Decimal(run.events)
    eventbridge = outputs * scale * _price("eventbridge_event") / MILLION
    measured_duration = measured[2].usd_per_million_events
    return [
        *measured,
        CostLine("Total", total),
        CostLine(
            f"Model: Lambda duration as CPU time + {NETWORK_MS_PER_ROUND_TRIP} ms per round trip",
            modelled_duration,
            measured=False,
        ),
        CostLine("Model: EventBridge as the target (one entry per action sent)", eventbridge, measured=False),
        CostLine(
            "Model: total with that duration and EventBridge as the target",
            total - measured_duration + modelled_duration + eventbridge,
            measured=False,
        ),
    ]
