"""Scenario 9: the rule source is down, or holds a malformed file, while rules are live."""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.exceptions import ReadTimeoutError

from pia.aws.wiring import Wiring
from pia_cli.lambda_events import sequence
from pia_cli.recorder import error_response
from pia_cli.request_checks import check_first
from tests.reliability.deployment import REGION, Deployment, Produced, _environment
from tests.reliability.ledger import ReliabilityLedger
from tests.reliability.reference import RuleSpec
from tests.reliability.workload import CATALOG, random_events, reference_for, users

pytestmark = [pytest.mark.reliability, pytest.mark.filterwarnings("ignore:No application metrics")]
SHARD = "shardId-000000000000"
KEY = "rules/rules.csv"


def rules_csv(specs: tuple[RuleSpec, ...]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(specs[0].row()))
    writer.writeheader()
    writer.writerows(s.row() for s in specs)
    return buffer.getvalue().encode()


def _renamed_header(specs: tuple[RuleSpec, ...]) -> bytes:
    return rules_csv(specs).replace(b"EventName", b"Event", 1)


OUTAGES: dict[str, str] = {
    "S3 ServiceUnavailable": "service",
    "S3 SlowDown": "service",
    "S3 AccessDenied": "service",
    "S3 read timeout": "service",
    "rule file deleted": "file",
    "not UTF-8": "file",
    "not a spreadsheet (.xlsx of garbage)": "file",
    "required column renamed": "file",
    "empty file": "file",
    "every row invalid": "file",
}


class RulePoller:
    """The scheduled rule poller, run "later" each time with its own clock, on this deployment."""

    def __init__(self, stack: Deployment, poller: ModuleType, bucket: str) -> None:
        self.stack = stack
        self.module = poller
        self.environment = {
            **stack.environment,
            "RULE_SOURCE": "spreadsheet",
            "RULES_BUCKET": bucket,
            "RULES_PREFIX": "rules/",
            "REMOVED_RULE_GRACE_HOURS": "24",
        }
        self.clock = datetime.now(UTC)
        self.call_fault: Callable[..., Any] | None = None
        self.send_fault: Callable[..., Any] | None = None
        self.s3: Any = None
        self.container: Any = None
        self.failures = 0

    def _client(self, service: str, region_name: str | None = None) -> Any:
        if service != "s3":
            return self.stack.clients("rule_poller", self.environment)(service, region_name)
        if self.s3 is None:
            self.s3 = boto3.client("s3", region_name=region_name or REGION)
            self.s3.meta.events.register_first("before-call.s3.*", self._outage_call)
            self.s3.meta.events.register_first("before-send.s3", self._outage_send)
            check_first(self.s3, self.stack.checks("rule_poller", self.environment))
        return self.s3

    def _now(self) -> datetime:
        return self.clock

    def _outage_call(self, **kwargs: Any) -> Any:
        return self.call_fault(**kwargs) if self.call_fault else None

    def _outage_send(self, **kwargs: Any) -> Any:
        return self.send_fault(**kwargs) if self.send_fault else None

    def run(self, after: timedelta) -> dict[str, Any] | None:
        """One scheduled run, in a warm container; None when the run failed (the schedule simply runs
        again later)."""
        self.clock += after
        with (
            _environment(self.environment),
            self.module.container.wired(Wiring(self._client, self._now)) as container,
        ):
            if self.container is None:
                self.container = container.build()
            with container.running(self.container):
                try:
                    result: dict[str, Any] = self.module.lambda_handler({}, self.stack.context)
                except Exception:
                    self.failures += 1
                    return None
        return result


def _outage(name: str, poller: RulePoller, s3: Any, bucket: str, rng: random.Random) -> None:
    if name.startswith("S3 ") and name != "S3 read timeout":
        code = name.removeprefix("S3 ")
        status = {"ServiceUnavailable": 503, "SlowDown": 503, "AccessDenied": 403}[code]
        poller.call_fault = lambda **_: error_response(status, code, "injected")
    elif name == "S3 read timeout":

        def timeout(request: Any, **_: Any) -> None:
            raise ReadTimeoutError(endpoint_url=request.url)

        poller.send_fault = timeout
    elif name == "rule file deleted":
        s3.delete_object(Bucket=bucket, Key=KEY)
    else:
        bodies: dict[str, tuple[str, bytes]] = {
            "not UTF-8": (KEY, rules_csv(CATALOG).decode().encode("utf-16")),
            "not a spreadsheet (.xlsx of garbage)": ("rules/rules.xlsx", rng.randbytes(2_000)),
            "required column renamed": (KEY, _renamed_header(CATALOG)),
            "empty file": (KEY, b""),
            "every row invalid": (KEY, rules_csv(CATALOG).replace(b"aggregator", b"aggregater")),
        }
        key, body = bodies[name]
        s3.put_object(Bucket=bucket, Key=key, Body=body)


def _ruleset_item(stack: Deployment) -> dict[str, Any]:
    item = stack.dynamodb.get_item(
        TableName=stack.rulesets, Key={"pk": {"S": "RULESET"}, "sk": {"S": "CURRENT"}}, ConsistentRead=True
    )
    return dict(item["Item"])


def test_rule_source_outage_keeps_the_last_good_ruleset_and_deletes_nothing(
    deploy: Callable[..., Deployment], ledger: ReliabilityLedger, examples: int
) -> None:
    row = ledger.scenario(
        9,
        "Rule source outage",
        "Rules are published from a CSV in S3 by the real poller and counted for a while; then S3 fails "
        "(ServiceUnavailable, SlowDown, AccessDenied, read timeouts) or the file is deleted, re-encoded "
        "UTF-16, replaced by a garbage .xlsx, has a required column renamed, is emptied, or has an error in "
        "every row. The poller "
        "keeps running on its schedule, its clock moving past the 24 h grace period for removed rules, "
        "while events keep arriving. Checked: the ruleset pointer is unchanged, no counter is deleted or "
        "altered by the poller, counting goes on under the last good rules (exact against the model), "
        "and once the source is fixed the next run publishes again.",
    )
    from rule_poller import app as poller_module

    for run in range(examples):
        rng = random.Random(f"rule-outage-{run}")
        name = list(OUTAGES)[run % len(OUTAGES)]
        with deploy(rng) as stack:
            s3 = boto3.client("s3", region_name=REGION)
            bucket = f"rel-rules-{stack.aggregates}"
            s3.create_bucket(Bucket=bucket)
            s3.put_object(Bucket=bucket, Key=KEY, Body=rules_csv(CATALOG))
            poller = RulePoller(stack, poller_module, bucket)
            differences: list[str] = []
            first = poller.run(timedelta(0))
            if first is None or first.get("status") != "published":
                differences.append(f"the good file did not publish: {first}")
            stack.rule_ids = {output: rule_id for output, rule_id in _live_rule_ids(stack).items()}
            people = users(rng)
            events = random_events(rng, people, rng.randint(10, 30))
            before = [Produced(SHARD, int(sequence(i + 1)), e) for i, e in enumerate(events)]
            stack.invoke(stack.batch(before))
            published = _ruleset_item(stack)
            counters = stack.counters()

            _outage(name, poller, s3, bucket, rng)
            outcomes = [poller.run(timedelta(hours=rng.choice((1, 6, 13)))) for _ in range(3)]
            during = random_events(rng, people, rng.randint(5, 20), first=len(events))
            later = [Produced(SHARD, int(sequence(len(events) + i + 1)), e) for i, e in enumerate(during)]
            if any(o is not None and o.get("status") == "published" for o in outcomes):
                differences.append(f"{name}: the poller published during the outage: {outcomes}")
            if _ruleset_item(stack) != published:
                differences.append(f"{name}: the live ruleset changed during the outage")
            now = stack.counters()
            if now != counters:
                differences.append(
                    f"{name}: counters changed during the outage ({len(counters)} -> {len(now)})"
                )
            stack.invoke(stack.batch(later))
            model = reference_for((p.lane, p.sequence, p.event) for p in before + later)
            differences += stack.compare(model, CATALOG).differences

            poller.call_fault = poller.send_fault = None
            for stale in ("rules/rules.xlsx",):
                s3.delete_object(Bucket=bucket, Key=stale)
            changed = (
                *CATALOG[:-1],
                RuleSpec("trk_watch_more", "view", total=("greater", "3.5"), reset=True),
            )
            s3.put_object(Bucket=bucket, Key=KEY, Body=rules_csv(changed))
            recovered = poller.run(timedelta(minutes=5))
            if recovered is None or recovered.get("status") != "published":
                differences.append(f"{name}: a fixed source did not publish: {recovered}")
            row.record(faults=sum(1 for o in outcomes if o is None), differences=differences)
    assert row.differences == 0, row.verdict()


def _live_rule_ids(stack: Deployment) -> dict[str, str]:
    body = json.loads(_ruleset_item(stack)["body"]["S"])
    return {rule["output_name"]: rule["rule_id"] for rule in body["rules"]}
