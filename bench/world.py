"""One in-process AWS for a whole bench run: moto, the project's tables, the published rule, the meter.

The aggregator and the baseline run against the same moto in the same process. Clients made from
boto3's default session are metered; ``plain`` clients (setup, seeding, checking results) are not.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
from moto import mock_aws

from bench.metering import Meter
from bench.moto_support import REGION, MotoItems
from bench.scenario import APP_ID, bench_ruleset
from pia.aws.clients import AwsClients
from pia.rules.ruleset import Ruleset, RulesetTable
from pia_cli.emulator import create_table, one_backup_per_transaction
from pia_cli.partiql_batches import partiql_batches

AGGREGATES_TABLE = "pia-bench-aggregates"
RULESET_TABLE = "pia-bench-ruleset"
TIMESERIES_TABLE = "pia-bench-timeseries"
BASELINE_TABLE = "pia-bench-baseline"
RAW_EVENTS_BUCKET = "pia-bench-raw-events"


def function_environment() -> dict[str, str]:
    """The aggregator's environment as template.yaml sets it, pointed at the bench tables."""
    return {
        "AWS_DEFAULT_REGION": REGION,
        "AGGREGATES_TABLE": AGGREGATES_TABLE,
        "RULESET_TABLE": RULESET_TABLE,
        "TIMESERIES_TABLE": TIMESERIES_TABLE,
        "RAW_EVENTS_BUCKET": RAW_EVENTS_BUCKET,
        "PINPOINT_APP_ID": APP_ID,
        "PINPOINT_REGION": REGION,
        "ACTION_TARGETS": "pinpoint",
        "MAX_RECORD_AGE_SECONDS": "86400",
        "PARALLELIZATION_FACTOR": "1",
    }


@dataclass
class World:
    meter: Meter
    plain: boto3.session.Session
    ruleset: Ruleset

    def plain_client(self, service: str) -> Any:
        """Not metered: setup, seeding and checking results."""
        return self.plain.client(service, region_name=REGION)  # type: ignore[call-overload]

    def metered_client(self, service: str) -> Any:
        """Metered, configured like the handler's own clients."""
        return AwsClients()(service, region_name=REGION)


@contextmanager
def aws_world(ruleset: Ruleset | None = None) -> Iterator[World]:
    previous = boto3.DEFAULT_SESSION
    with mock_aws(), one_backup_per_transaction(), partiql_batches():
        try:
            boto3.setup_default_session(region_name=REGION)
            meter = Meter(MotoItems(REGION))
            assert boto3.DEFAULT_SESSION is not None
            meter.attach(boto3.DEFAULT_SESSION.events)
            plain = boto3.session.Session(region_name=REGION)
            dynamodb = plain.client("dynamodb", region_name=REGION)
            for name in (AGGREGATES_TABLE, RULESET_TABLE, BASELINE_TABLE):
                create_table(dynamodb, name)
            create_table(dynamodb, TIMESERIES_TABLE, ttl=True)
            plain.client("s3", region_name=REGION).create_bucket(Bucket=RAW_EVENTS_BUCKET)
            published = ruleset or bench_ruleset()
            RulesetTable(dynamodb, RULESET_TABLE).publish(published, expected_version=0)
            yield World(meter, plain, published)
        finally:
            boto3.DEFAULT_SESSION = previous
