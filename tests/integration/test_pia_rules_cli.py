"""A marketer's file from ``pia rules template`` through validate and push to live rules, on moto."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from openpyxl import load_workbook

from pia.counting.store import CounterStore
from pia.rules.ruleset import RulesetTable
from pia_cli.lambda_events import StreamRecord, kinesis_event, record_data, s3_object_created_event, sequence
from pia_cli.main import COMMANDS, build_parser, main
from tests.conftest import AGGREGATES_TABLE, RULES_BUCKET, RULESET_TABLE


def pinpoint_event(
    user: str, event_type: str, n: int, metrics: dict[str, float] | None = None
) -> dict[str, Any]:
    return {
        "event_type": event_type,
        "event_timestamp": 1_767_600_000_000 + n * 1000,
        "arrival_timestamp": 1_767_600_000_500 + n * 1000,
        "event_version": "3.1",
        "application": {"app_id": "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6", "sdk": {"name": "aws-amplify"}},
        "client": {"client_id": f"endpoint-{user}"},
        "device": {"platform": {"name": "ios"}},
        "session": {"session_id": f"session-{user}"},
        "attributes": {},
        "metrics": metrics or {},
        "endpoint": {"Id": f"endpoint-{user}", "User": {"UserId": user}},
    }


def upload_event(key: str) -> dict[str, Any]:
    return s3_object_created_event(RULES_BUCKET, key, size=1, etag="0", time="2026-01-05T09:02:17.504Z")


def break_row(path: Path) -> None:
    workbook = load_workbook(path)
    sheet = workbook["Rules"]
    sheet["G3"] = "bigger"
    workbook.save(path)


@pytest.fixture
def bucket(aws: None) -> str:
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=RULES_BUCKET)
    return RULES_BUCKET


def test_template_validate_push_poll_gives_the_live_ruleset(
    tmp_path: Path,
    rule_poller_app: Any,
    dynamodb: Any,
    lambda_context: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "rules.xlsx"
    assert main(["rules", "template", str(path)]) == 0
    assert main(["rules", "validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "rules.xlsx: 4 rows, 4 live, 0 with errors, 0 with warnings, 0 disabled" in out
    assert "4    ok      trk_date_purchase" in out

    monkeypatch.setenv("PIA_RULES_BUCKET", RULES_BUCKET)
    assert main(["rules", "push", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"pushed s3://{RULES_BUCKET}/rules/rules.xlsx" in out
    assert f"its report will be s3://{RULES_BUCKET}/rules/rules.report.csv" in out

    summary = rule_poller_app.lambda_handler(upload_event("rules/rules.xlsx"), lambda_context)

    assert summary["status"] == "published"
    ruleset = RulesetTable(dynamodb, RULESET_TABLE).current()
    assert ruleset.version == 1
    assert [(r.output_name, r.rule_type.value, r.reset) for r in ruleset.rules] == [
        ("trk_greenbutton", "aggregator", False),
        ("trk_course_completed", "aggregator", True),
        ("trk_date_purchase", "date", False),
        ("trk_ltv", "aggregator", False),
    ]
    report = boto3.client("s3").get_object(Bucket=RULES_BUCKET, Key="rules/rules.report.csv")["Body"].read()
    assert report.decode("utf-8-sig").splitlines()[1:] == [
        "2,ok,trk_greenbutton,",
        "3,ok,trk_course_completed,",
        "4,ok,trk_date_purchase,",
        "5,ok,trk_ltv,",
    ]


def test_validate_exits_1_on_errors_and_push_refuses_unless_forced(
    tmp_path: Path, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rules.xlsx"
    main(["rules", "template", str(path)])
    break_row(path)
    capsys.readouterr()

    assert main(["rules", "validate", str(path), "--format", "json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["rows"][1]["status"] == "error"
    assert document["rows"][1]["message"].startswith('error in Operator-V: "bigger" is not an operator')

    s3 = boto3.client("s3", region_name="us-east-1")
    assert main(["rules", "push", str(path), "--bucket", bucket]) == 1
    assert "not pushed: rules.xlsx has errors" in capsys.readouterr().err
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0

    assert main(["rules", "push", str(path), "--bucket", bucket, "--prefix", "team-a", "--force"]) == 0
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["team-a/rules.xlsx"]


def test_cli_errors_are_plain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PIA_RULES_BUCKET", raising=False)
    path = tmp_path / "rules.xlsx"
    main(["rules", "template", str(path)])
    assert main(["rules", "template", str(path)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(["rules", "push", str(path)]) == 2
    assert "pass --bucket or set PIA_RULES_BUCKET" in capsys.readouterr().err
    (tmp_path / "rules.csv").write_bytes(b"Event,Name\nx,y\n")
    assert main(["rules", "validate", str(tmp_path / "rules.csv")]) == 1
    assert "error in header: the table has no column RuleType" in capsys.readouterr().out


def test_commands_form_one_table_that_later_commands_extend() -> None:
    paths = [c.path for c in COMMANDS]
    assert {("rules", "template"), ("rules", "validate"), ("rules", "push")} <= set(paths)
    assert len(paths) == len(set(paths))
    parser = build_parser()
    args = parser.parse_args(["rules", "push", "x.csv", "--prefix", "/team-a"])
    assert args.run is COMMANDS[paths.index(("rules", "push"))].run and args.prefix == "team-a/"


def test_a_pushed_file_drives_the_aggregator_end_to_end(
    tmp_path: Path,
    rule_poller_app: Any,
    aggregator_app: Any,
    dynamodb: Any,
    recorder: Any,
    lambda_context: Any,
) -> None:
    path = tmp_path / "rules.xlsx"
    main(["rules", "template", str(path)])
    assert main(["rules", "push", str(path), "--bucket", RULES_BUCKET]) == 0
    rule_poller_app.lambda_handler(upload_event("rules/rules.xlsx"), lambda_context)
    rules = {r.output_name: r.rule_id for r in RulesetTable(dynamodb, RULESET_TABLE).current().rules}

    documents = [pinpoint_event("ana", "greenbutton", n) for n in range(6)]
    documents += [pinpoint_event("ben", "course_completed", 10 + n) for n in range(7)]
    documents += [pinpoint_event("ana", "GreenButton", 20)]
    event = kinesis_event([StreamRecord(record_data(d), sequence(n + 1)) for n, d in enumerate(documents)])
    assert aggregator_app.lambda_handler(event, lambda_context) == {"batchItemFailures": []}

    store = CounterStore(dynamodb, AGGREGATES_TABLE)
    ana = store.load(rules["trk_greenbutton"], "ana")
    ben = store.load(rules["trk_course_completed"], "ben")
    assert ana is not None and (ana.count, ana.ready) == (6, True)
    assert ben is not None and (ben.count, ben.fired) == (1, 2)
    assert recorder.user_attributes["ana"] == {"trk_greenbutton": "ready"}
    assert recorder.fired()[("ben", "trk_course_completed")] == 2
    assert store.counters_for_rule(rules["trk_date_purchase"]) == []
