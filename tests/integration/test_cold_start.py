"""What a new container builds on its first batch: each client once, whatever the number of
adapters that use it (a second DynamoDB client costs the cold start some 35 ms of CPU, ``make bench``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from pia.aws.wiring import Wiring
from pia_cli.local_clients import LocalClients
from pia_cli.local_lambda import handler_module
from tests.integration.timeseries_support import date_row, doc


def test_a_new_container_makes_one_dynamodb_client_for_counters_rollups_and_rules(
    timeseries_stack: Any,
) -> None:
    stack = timeseries_stack
    stack.clock.now = datetime(2026, 3, 10, 12, tzinfo=UTC)
    stack.publish([date_row("greater_or_equal", "2")], activation="2026-03-01")
    made: Counter[str] = Counter()

    def counting(service: str, region_name: str | None = None) -> Any:
        made[service] += 1
        return stack.calls(service, region_name)

    stack.aggregator.container.rewire(Wiring(LocalClients("pia-test", base=counting), stack.clock))
    docs = [doc("dora", datetime(2026, 3, 9, hour, tzinfo=UTC)) for hour in (8, 9)]
    assert stack.aggregate(docs, start=1) == {"batchItemFailures": []}

    assert stack.attributes() == {"dora": {"trk_date_purchase": "ready"}}, "the time-series path ran"
    assert made["dynamodb"] == 1


def test_a_new_evaluator_container_makes_one_dynamodb_client_with_the_athena_backfill(
    monkeypatch: Any,
) -> None:
    """The Athena backfill's pending-query ledger lives in the time-series table, beside the rollups,
    the coverage and the seen values: one client serves them all."""
    for name, value in {
        "RULESET_TABLE": "rules",
        "TIMESERIES_TABLE": "ts",
        "AGGREGATES_TABLE": "agg",
        "RAW_EVENTS_BUCKET": "raw",
        "ATHENA_WORKGROUP": "wg",
        "GLUE_DATABASE": "db",
        "BACKFILL_RESULTS_BUCKET": "results",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    made: Counter[str] = Counter()

    def counting(service: str, region_name: str | None = None) -> Any:
        made[service] += 1
        return object()

    handler_module("evaluator").build(Wiring(counting))

    assert made["dynamodb"] == 1, made


FIRST_BATCH_PROBE = """
import json, sys
from bench.scenario import CANONICAL, bench_ruleset
from bench.world import RAW_EVENTS_BUCKET, aws_world
from pia.rules.table import parse_rules
from pia.rules.ruleset import Ruleset
from tests.integration.timeseries_support import date_row

class Context:
    function_name = "pia-aggregator"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:pia-aggregator"
    aws_request_id = "first-batch"

ruleset = bench_ruleset()
if sys.argv[1] == "date":
    dated = parse_rules([(3, date_row("greater_or_equal", "2"))]).rules
    ruleset = Ruleset(version=1, rules=ruleset.rules + dated, series_activation={dated[0].series: "2026-03-01"})
with aws_world(ruleset) as world:
    from aggregator import app

    response = app.lambda_handler(next(iter(CANONICAL.batches())), Context())
    archived = world.plain_client("s3").list_objects_v2(Bucket=RAW_EVENTS_BUCKET).get("KeyCount", 0)
print(json.dumps({
    "failures": response["batchItemFailures"],
    "archived": archived,
    "loaded": sorted(m for m in sys.modules if m.startswith("pia.timeseries")),
}))
"""


@pytest.mark.parametrize(
    ("rules", "rollups_loaded"),
    [("aggregate only", False), ("date", True)],
    ids=["aggregate-only", "date-rule"],
)
def test_the_first_batch_archives_raw_events_and_loads_the_rollups_only_for_a_live_date_rule(
    rules: str, rollups_loaded: bool
) -> None:
    """Issue 11, item 5: with a raw events bucket (the deployed default) and no live date rule, the
    first batch is archived without importing the rollups, the due index or the backfill code."""
    from bench.imports import ROOT, handler_environment
    from bench.world import function_environment

    env = handler_environment(function_environment())
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env["PYTHONPATH"]])
    done = subprocess.run(
        [sys.executable, "-c", FIRST_BATCH_PROBE, rules],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["failures"] == [] and report["archived"] == 1
    assert "pia.timeseries.archive" in report["loaded"]
    rollups = {"pia.timeseries.realtime", "pia.timeseries.store", "pia.timeseries.rollups"}
    assert (rollups <= set(report["loaded"])) is rollups_loaded
    if not rollups_loaded:
        assert rollups.isdisjoint(report["loaded"]), report["loaded"]
