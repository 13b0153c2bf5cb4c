"""The rule poller handler on moto (S3, DynamoDB) and a stubbed Honeycode, driven by the sample events."""

from __future__ import annotations

import copy
import csv
import io
import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from openpyxl import Workbook

from pia.counting.counters import CounterState
from pia.counting.store import CounterStore, CounterWrite, counter_key, item_size, rule_partitions
from pia.rules.honeycode import honeycode_client
from pia.rules.model import Rule
from pia.rules.ruleset import RulesetTable
from pia.rules.source import SourceFailure
from tests.conftest import (
    AGGREGATES_TABLE,
    RULE_HEADER,
    RULES_BUCKET,
    RULESET_TABLE,
)
from tests.conftest import CASE_COURSE as COURSE
from tests.conftest import CASE_GREENBUTTON as GREEN
from tests.conftest import CASE_PURCHASE as PURCHASE

EVENTS = Path(__file__).resolve().parents[2] / "events"
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
UPLOADED_KEY = "rules/marketing rules.xlsx"


def sample(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return document


def xlsx(*rows: Sequence[str]) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "Rules"
    sheet.append(list(RULE_HEADER))
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def csv_bytes(*rows: Sequence[str]) -> bytes:
    return ("\ufeff" + "\r\n".join(",".join(r) for r in [list(RULE_HEADER), *rows]) + "\r\n").encode()


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def s3() -> Any:
    return boto3.client("s3", region_name="us-east-1")


@pytest.fixture
def clock(rule_poller_app: Any, monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    container = rule_poller_app.container
    container.rewire(replace(container.wiring, clock=clock))
    return clock


@pytest.fixture
def sdk_calls(rule_poller_app: Any, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Every request the handler's clients send, as (operation, parameters)."""
    calls: list[tuple[str, dict[str, Any]]] = []
    container = rule_poller_app.container
    real_client = container.wiring.clients

    def record(model: Any, params: dict[str, Any], **_: Any) -> None:
        calls.append((model.name, dict(params)))

    def recording_client(service: str, region_name: str | None = None) -> Any:
        client = real_client(service, region_name)
        client.meta.events.register("before-parameter-build.*.*", record)
        return client

    container.rewire(replace(container.wiring, clients=recording_client))
    return calls


@pytest.fixture
def poll(rule_poller_app: Any, clock: Clock, lambda_context: Any) -> Any:
    def run(event: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = rule_poller_app.lambda_handler(event, lambda_context)
        return result

    return run


def live(dynamodb: Any) -> list[Rule]:
    return list(RulesetTable(dynamodb, RULESET_TABLE).current().rules)


def ruleset_items(dynamodb: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = dynamodb.scan(TableName=RULESET_TABLE)["Items"]
    return sorted(items, key=lambda i: i["sk"]["S"])


def aggregate_items(dynamodb: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": AGGREGATES_TABLE}
    while True:
        page = dynamodb.scan(**kwargs)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def seed_counters(dynamodb: Any, rule_id: str, users: list[str], endpoints: int = 1, count: int = 4) -> None:
    states = [
        CounterState(
            rule_id=rule_id,
            user_id=user,
            version=1,
            count=count,
            endpoints=tuple(f"{user}-endpoint-{n}-".ljust(240, "x") for n in range(endpoints)),
        )
        for user in users
    ]
    result = CounterStore(dynamodb, AGGREGATES_TABLE).commit(
        [CounterWrite(s.key, s, 0) for s in states], now=0
    )
    assert len(result.status) == len(states) and all(s.value == "committed" for s in result.status.values())


def rule_id_of(dynamodb: Any, output_name: str) -> str:
    return next(r.rule_id for r in live(dynamodb) if r.output_name == output_name)


def report_rows(s3: Any, key: str) -> list[list[str]]:
    body = s3.get_object(Bucket=RULES_BUCKET, Key=key)["Body"].read().decode("utf-8-sig")
    return list(csv.reader(io.StringIO(body)))


def use_honeycode_client(app: Any, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    real = app.container.wiring.clients

    def factory(service: str, region_name: str | None = None) -> Any:
        return client if service == "honeycode" else real(service, region_name)

    app.container.rewire(replace(app.container.wiring, clients=factory))


def test_the_sample_s3_event_publishes_the_uploaded_file_and_writes_its_report(
    s3: Any, dynamodb: Any, poll: Any
) -> None:
    bad = [*GREEN[:6], "bigger", *GREEN[7:]]
    bad[1] = "checkout"
    s3.put_object(Bucket=RULES_BUCKET, Key=UPLOADED_KEY, Body=xlsx(GREEN, bad, COURSE, PURCHASE))

    summary = poll(sample("s3-rules-upload.json"))

    assert summary["status"] == "published" and summary["version"] == 1 and summary["errors"] == 1
    assert [r.output_name for r in live(dynamodb)] == [
        "trk_greenbutton",
        "trk_course_completed",
        "trk_date_purchase",
    ]
    current = RulesetTable(dynamodb, RULESET_TABLE).current()
    assert current.source == f"s3://{RULES_BUCKET}/{UPLOADED_KEY}"
    rows = report_rows(s3, "rules/marketing rules.report.csv")
    assert rows[0] == ["row", "status", "output_name", "message"]
    assert [r[:3] for r in rows[1:]] == [
        ["2", "ok", "trk_greenbutton"],
        ["3", "error", ""],
        ["4", "ok", "trk_course_completed"],
        ["5", "ok", "trk_date_purchase"],
    ]
    assert rows[2][3].startswith('error in Operator-V: "bigger" is not an operator; use greater')


def test_unchanged_input_publishes_nothing_new_and_rewrites_no_report(
    s3: Any, dynamodb: Any, sdk_calls: list[tuple[str, dict[str, Any]]], poll: Any, clock: Clock
) -> None:
    s3.put_object(Bucket=RULES_BUCKET, Key="rules/rules.csv", Body=csv_bytes(GREEN, COURSE))
    assert poll(sample("poller-schedule.json"))["status"] == "published"
    before = ruleset_items(dynamodb)
    clock.now += timedelta(minutes=5)
    s3.put_object(Bucket=RULES_BUCKET, Key="rules/rules.csv", Body=csv_bytes(GREEN, COURSE))
    summary = poll(sample("poller-schedule.json"))
    assert (summary["status"], summary["version"]) == ("unchanged", 1)
    assert summary["report"] == f"s3://{RULES_BUCKET}/rules/rules.report.csv"
    assert ruleset_items(dynamodb) == before
    assert [i["sk"]["S"] for i in before] == ["CURRENT", "V#000000000001"]
    writes = [op for op, _ in sdk_calls if op in ("PutObject", "TransactWriteItems")]
    assert writes == ["PutObject", "TransactWriteItems"]

    s3.put_object(Bucket=RULES_BUCKET, Key="rules/rules.csv", Body=csv_bytes(GREEN, COURSE, ["bad"]))
    poll(sample("poller-schedule.json"))
    assert [op for op, _ in sdk_calls if op == "PutObject"] == ["PutObject", "PutObject"]
    assert ruleset_items(dynamodb) == before


def test_the_schedule_reads_the_newest_rule_file_and_never_a_report(
    s3: Any, dynamodb: Any, poll: Any
) -> None:
    s3.put_object(Bucket=RULES_BUCKET, Key="rules/a-old.csv", Body=csv_bytes(GREEN))
    s3.put_object(Bucket=RULES_BUCKET, Key="rules/b-new.xlsx", Body=xlsx(GREEN, COURSE))
    s3.put_object(Bucket=RULES_BUCKET, Key="rules/c.report.csv", Body=csv_bytes(PURCHASE))
    s3.put_object(Bucket=RULES_BUCKET, Key="elsewhere/z.csv", Body=csv_bytes(PURCHASE))
    poll(sample("poller-schedule.json"))
    assert [r.output_name for r in live(dynamodb)] == ["trk_greenbutton", "trk_course_completed"]
    assert RulesetTable(dynamodb, RULESET_TABLE).current().source.endswith("rules/b-new.xlsx")


def test_a_report_upload_or_a_late_notification_never_brings_back_other_rules(
    s3: Any, dynamodb: Any, poll: Any
) -> None:
    s3.put_object(Bucket=RULES_BUCKET, Key=UPLOADED_KEY, Body=xlsx(GREEN))
    s3.put_object(Bucket=RULES_BUCKET, Key="rules/newer.csv", Body=csv_bytes(GREEN, COURSE))
    late = sample("s3-rules-upload.json")
    late["Records"][0]["eventTime"] = "2020-01-01T00:00:00.000Z"
    poll(late)
    assert [r.output_name for r in live(dynamodb)] == ["trk_greenbutton", "trk_course_completed"]

    report_event = copy.deepcopy(late)
    report_event["Records"][0]["s3"]["object"]["key"] = "rules/newer.report.csv"
    assert poll(report_event) == {"status": "ignored"}
    assert len(ruleset_items(dynamodb)) == 2


def test_honeycode_source_through_the_handler(
    rule_poller_app: Any, dynamodb: Any, s3: Any, poll: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    workbook, table = "11111111-2222-3333-4444-555555555555", "66666666-7777-8888-9999-aaaaaaaaaaaa"
    monkeypatch.setenv("RULE_SOURCE", "honeycode")
    monkeypatch.setenv("HONEYCODE_WORKBOOK_ID", workbook)
    monkeypatch.setenv("HONEYCODE_TABLE_ID", table)
    client = honeycode_client()
    stub = Stubber(client)
    ids = [f"{n:08x}-0000-0000-0000-000000000000" for n in range(len(RULE_HEADER))]
    columns = [
        {"tableColumnId": i, "tableColumnName": name} for i, name in zip(ids, RULE_HEADER, strict=True)
    ]
    rows = [
        {
            "rowId": f"row:{table}/{n:08x}-0000-0000-0000-000000000000",
            "cells": [{"formattedValue": v} for v in r],
        }
        for n, r in enumerate([GREEN, PURCHASE])
    ]
    base = {"workbookId": workbook, "tableId": table}
    stub.add_response("list_table_columns", {"tableColumns": columns}, base)
    stub.add_response(
        "list_table_rows", {"columnIds": ids, "rows": rows, "workbookCursor": 1}, {**base, "maxResults": 100}
    )
    stub.activate()
    use_honeycode_client(rule_poller_app, client, monkeypatch)
    rule_poller_app.container.cold_start()

    summary = poll(sample("poller-schedule.json"))

    stub.assert_no_pending_responses()
    assert summary["status"] == "published"
    assert [(r.row, r.output_name) for r in live(dynamodb)] == [
        (1, "trk_greenbutton"),
        (2, "trk_date_purchase"),
    ]
    report = json.loads(
        s3.get_object(Bucket=RULES_BUCKET, Key=f"rules/honeycode-{table}.report.json")["Body"].read()
    )
    assert [row["status"] for row in report["rows"]] == ["ok", "ok"]


def test_outage_keeps_the_ruleset_and_every_aggregate(
    rule_poller_app: Any, dynamodb: Any, s3: Any, poll: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3.put_object(Bucket=RULES_BUCKET, Key="rules/rules.csv", Body=csv_bytes(GREEN, COURSE))
    poll(sample("poller-schedule.json"))
    course = rule_id_of(dynamodb, "trk_course_completed")
    seed_counters(dynamodb, course, [f"user-{n}" for n in range(30)])
    clock.now += timedelta(hours=1)
    s3.put_object(Bucket=RULES_BUCKET, Key="rules/rules.csv", Body=csv_bytes(GREEN))
    poll(sample("poller-schedule.json"))
    clock.now += timedelta(days=2)
    before = (ruleset_items(dynamodb), aggregate_items(dynamodb))

    s3.delete_object(Bucket=RULES_BUCKET, Key="rules/rules.csv")
    with pytest.raises(SourceFailure, match=r"no \.csv or \.xlsx rule file"):
        poll(sample("poller-schedule.json"))
    with pytest.raises(SourceFailure, match="NoSuchKey"):
        poll(sample("s3-rules-upload.json"))
    s3.put_object(Bucket=RULES_BUCKET, Key=UPLOADED_KEY, Body=b"PK\x03\x04 not really a workbook")
    with pytest.raises(SourceFailure, match="not a readable XLSX"):
        poll(sample("s3-rules-upload.json"))
    assert "not a readable XLSX" in report_rows(s3, "rules/marketing rules.report.csv")[1][3]

    monkeypatch.setenv("RULE_SOURCE", "honeycode")
    monkeypatch.setenv("HONEYCODE_WORKBOOK_ID", "11111111-2222-3333-4444-555555555555")
    monkeypatch.setenv("HONEYCODE_TABLE_ID", "66666666-7777-8888-9999-aaaaaaaaaaaa")
    client = honeycode_client()
    stub = Stubber(client)
    stub.add_client_error("list_table_columns", "ThrottlingException", "Rate exceeded", http_status_code=429)
    stub.activate()
    use_honeycode_client(rule_poller_app, client, monkeypatch)
    rule_poller_app.container.cold_start()
    with pytest.raises(SourceFailure, match="ThrottlingException"):
        poll(sample("poller-schedule.json"))

    assert (ruleset_items(dynamodb), aggregate_items(dynamodb)) == before
    assert len(before[1]) == 30


def users_in_one_partition(rule_id: str, count: int) -> list[str]:
    """Users whose counters share one partition, so a single Query must page past DynamoDB's 1 MB."""
    target = rule_partitions(rule_id)[0]
    users: list[str] = []
    n = 0
    while len(users) < count:
        user = f"user-{n:06d}"
        if counter_key(rule_id, user)["pk"]["S"] == target:
            users.append(user)
        n += 1
    return users


def test_grace_period_deletion_pages_through_more_than_1_mb_of_counters(
    dynamodb: Any, s3: Any, sdk_calls: list[tuple[str, dict[str, Any]]], poll: Any, clock: Clock
) -> None:
    s3.put_object(Bucket=RULES_BUCKET, Key="rules/rules.csv", Body=csv_bytes(GREEN, COURSE))
    poll(sample("poller-schedule.json"))
    course, green = rule_id_of(dynamodb, "trk_course_completed"), rule_id_of(dynamodb, "trk_greenbutton")
    heavy = users_in_one_partition(course, 290)
    seed_counters(dynamodb, course, heavy, endpoints=15)
    seed_counters(dynamodb, course, [f"light-{n}" for n in range(40)])
    seed_counters(dynamodb, green, [f"user-{n}" for n in range(10)])
    course_items = [i for i in aggregate_items(dynamodb) if i["rid"]["S"] == course]
    assert sum(item_size(i) for i in course_items if i["pk"]["S"] == rule_partitions(course)[0]) > 1_048_576

    clock.now += timedelta(hours=1)
    s3.put_object(Bucket=RULES_BUCKET, Key="rules/rules.csv", Body=csv_bytes(GREEN))
    removed_at = clock.now
    assert poll(sample("poller-schedule.json"))["pending_removal"] == {course: removed_at.isoformat()}
    clock.now = removed_at + timedelta(hours=23)
    assert poll(sample("poller-schedule.json"))["deleted_counters"] == {}
    assert len(aggregate_items(dynamodb)) == 340

    clock.now = removed_at + timedelta(hours=24, minutes=5)
    summary = poll(sample("poller-schedule.json"))

    assert summary["deleted_counters"] == {course: 330}
    assert summary["status"] == "published" and summary["pending_removal"] == {}
    remaining = aggregate_items(dynamodb)
    assert len(remaining) == 10 and {i["rid"]["S"] for i in remaining} == {green}
    queries = [params for op, params in sdk_calls if op == "Query"]
    assert len(queries) > len(rule_partitions(course))
    assert any("ExclusiveStartKey" in q for q in queries)
    assert RulesetTable(dynamodb, RULESET_TABLE).current().removed == {}


def test_a_rule_restored_within_the_grace_period_keeps_its_counts(
    dynamodb: Any, s3: Any, poll: Any, clock: Clock
) -> None:
    s3.put_object(Bucket=RULES_BUCKET, Key="rules/rules.csv", Body=csv_bytes(GREEN, COURSE))
    poll(sample("poller-schedule.json"))
    course = rule_id_of(dynamodb, "trk_course_completed")
    seed_counters(dynamodb, course, ["alice", "bob"], count=2)

    clock.now += timedelta(hours=1)
    s3.put_object(Bucket=RULES_BUCKET, Key="rules/rules.csv", Body=csv_bytes(GREEN))
    poll(sample("poller-schedule.json"))
    clock.now += timedelta(hours=22)
    s3.put_object(Bucket=RULES_BUCKET, Key="rules/rules.csv", Body=csv_bytes(COURSE, GREEN))
    assert poll(sample("poller-schedule.json"))["restored"] == [course]
    clock.now += timedelta(days=3)
    poll(sample("poller-schedule.json"))

    store = CounterStore(dynamodb, AGGREGATES_TABLE)
    assert sorted((s.user_id, s.count) for s in store.counters_for_rule(course)) == [("alice", 2), ("bob", 2)]
    assert RulesetTable(dynamodb, RULESET_TABLE).current().removed == {}
