"""Honeycode source against the shipped service model: every request validated (Stubber) and signed."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.exceptions import ParamValidationError
from botocore.stub import Stubber

from pia.rules.honeycode import MODEL_ROOT, HoneycodeTable, cell_text, honeycode_client
from pia.rules.sheets import ReportLine, RowStatus, ValidationReport
from pia.rules.source import SourceFailure
from pia.rules.table import parse_table
from tests.conftest import RULE_HEADER

WORKBOOK = "11111111-2222-3333-4444-555555555555"
TABLE = "66666666-7777-8888-9999-aaaaaaaaaaaa"
COLUMN_IDS = {name: str(uuid.uuid5(uuid.NAMESPACE_URL, name)) for name in (*RULE_HEADER, "Key")}
BASE = {"workbookId": WORKBOOK, "tableId": TABLE}


def row_id(n: int) -> str:
    return f"row:{TABLE}/{uuid.UUID(int=n)}"


def rule_cells(n: int) -> dict[str, dict[str, str]]:
    """Row ``n`` as Honeycode returns it: text cells, a NUMBER target, and a 9999-99-99 text date."""
    values = {
        "RuleType": "aggregator",
        "EventName": f"event_{n}",
        "AttributeName": "na",
        "AttributeValue": "na",
        "Operator-C": "greater",
        "Target-C": str(n),
        "Operator-V": "na",
        "Target-V": "999",
        "ResetWhenReachTarget": "no",
        "StartDate": "9999-99-99",
        "FinishDate": "9999-99-99",
        "Key": f"aggregator-event_{n}",
    }
    cells = {name: {"format": "TEXT", "rawValue": v, "formattedValue": v} for name, v in values.items()}
    cells["Target-C"] = {"format": "NUMBER", "rawValue": str(n), "formattedValue": f"{n:,}.00"}
    return cells


def rows_page(numbers: range, order: list[str], token: str | None) -> dict[str, Any]:
    rows = []
    for n in numbers:
        cells = rule_cells(n)
        if n == 203:
            cells["Operator-V"] = {"format": "TEXT", "rawValue": "bigger", "formattedValue": "bigger"}
        rows.append({"rowId": row_id(n), "cells": [cells[name] for name in order]})
    page: dict[str, Any] = {
        "columnIds": [COLUMN_IDS[name] for name in order],
        "rows": rows,
        "workbookCursor": 7,
    }
    if token:
        page["nextToken"] = token
    return page


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    return honeycode_client()


def test_client_is_built_from_the_shipped_model_in_us_west_2_whatever_the_stack_region(client: Any) -> None:
    assert client.meta.region_name == "us-west-2"
    assert client.meta.endpoint_url == "https://honeycode.us-west-2.amazonaws.com"
    assert sorted(client.meta.service_model.operation_names) == ["ListTableColumns", "ListTableRows"]


def test_plain_boto3_finds_the_model_through_aws_data_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DATA_PATH", str(MODEL_ROOT))
    client = boto3.session.Session().client("honeycode", region_name="us-west-2")
    with pytest.raises(ParamValidationError, match='Missing required parameter in input: "workbookId"'):
        client.list_table_rows(tableId=TABLE, maxResults=100)
    with pytest.raises(ParamValidationError, match="maxResults"):
        client.list_table_rows(workbookId=WORKBOOK, tableId=TABLE, maxResults="100")


def test_reads_every_page_and_matches_reordered_columns_by_name(client: Any) -> None:
    names = list(COLUMN_IDS)
    reordered = list(reversed(names))
    shuffled = names[6:] + names[:6]
    with Stubber(client) as stub:
        columns = [{"tableColumnId": COLUMN_IDS[n], "tableColumnName": n, "format": "AUTO"} for n in names]
        stub.add_response("list_table_columns", {"tableColumns": columns[:5], "nextToken": "c2"}, BASE)
        stub.add_response("list_table_columns", {"tableColumns": columns[5:]}, {**BASE, "nextToken": "c2"})
        stub.add_response(
            "list_table_rows", rows_page(range(1, 101), reordered, "p2"), {**BASE, "maxResults": 100}
        )
        stub.add_response(
            "list_table_rows",
            rows_page(range(101, 201), reordered, "p3"),
            {**BASE, "maxResults": 100, "nextToken": "p2"},
        )
        stub.add_response(
            "list_table_rows",
            rows_page(range(201, 206), shuffled, None),
            {**BASE, "maxResults": 100, "nextToken": "p3"},
        )
        table = HoneycodeTable(client, WORKBOOK, TABLE).read()
        stub.assert_no_pending_responses()

    assert table.source == f"honeycode:{WORKBOOK}/{TABLE}"
    assert set(table.headers) == set(names)
    assert [n for n, _ in table.rows] == list(range(1, 206))
    result = parse_table(table)
    assert len(result.rules) == 204
    rule_42 = next(r for r in result.rules if r.row == 42)
    assert rule_42.event_name == "event_42"
    assert rule_42.count_condition is not None and rule_42.count_condition.target == 42
    assert [(e.row, e.column) for e in result.errors] == [(203, "Operator-V")]


def test_auto_dates_and_multi_select_cells_read_as_the_real_api_answers(client: Any) -> None:
    """Honeycode's API (botocore 1.34.120, its last model) answers ROWSET cells with ``formattedValues``
    and AUTO cells detected as dates with a serial and a display form; both must pass the model."""
    names = list(COLUMN_IDS)
    cells = rule_cells(1)
    cells["RuleType"] = {"format": "TEXT", "rawValue": "date", "formattedValue": "date"}
    cells["StartDate"] = {"format": "AUTO", "rawValue": "46143", "formattedValue": "5/1/2026"}
    cells["FinishDate"] = {"format": "AUTO", "rawValue": "46173", "formattedValue": "5/31/2026"}
    cells["AttributeValue"] = {"format": "ROWSET", "rawValue": "rows:t/[r1]", "formattedValues": ["books"]}
    cells["AttributeName"] = {"format": "TEXT", "rawValue": "category", "formattedValue": "category"}
    page = {
        "workbookCursor": 7,
        "columnIds": [COLUMN_IDS[n] for n in names],
        "rows": [{"rowId": row_id(1), "cells": [cells[n] for n in names]}],
    }
    with Stubber(client) as stub:
        columns = [{"tableColumnId": COLUMN_IDS[n], "tableColumnName": n, "format": "AUTO"} for n in names]
        stub.add_response("list_table_columns", {"tableColumns": columns}, BASE)
        stub.add_response("list_table_rows", page, {**BASE, "maxResults": 100})
        table = HoneycodeTable(client, WORKBOOK, TABLE).read()

    result = parse_table(table)
    assert result.errors == ()
    (rule,) = result.rules
    assert (str(rule.start_date), str(rule.finish_date)) == ("2026-05-01", "2026-05-31")
    assert (rule.attribute_name, rule.attribute_value) == ("category", "books")


@pytest.mark.parametrize(
    "code", ["ThrottlingException", "AccessDeniedException", "ResourceNotFoundException"]
)
def test_api_errors_become_source_failures(client: Any, code: str) -> None:
    with Stubber(client) as stub:
        stub.add_response("list_table_columns", {"tableColumns": []}, BASE)
        stub.add_client_error("list_table_rows", code, "no", expected_params={**BASE, "maxResults": 100})
        with pytest.raises(SourceFailure, match=code):
            HoneycodeTable(client, WORKBOOK, TABLE).read()


def test_a_repeated_next_token_stops_instead_of_looping(client: Any) -> None:
    order = list(COLUMN_IDS)
    with Stubber(client) as stub:
        stub.add_response("list_table_columns", {"tableColumns": []}, BASE)
        stub.add_response(
            "list_table_rows", rows_page(range(1, 3), order, "same"), {**BASE, "maxResults": 100}
        )
        for _ in range(2):
            stub.add_response(
                "list_table_rows",
                rows_page(range(3, 4), order, "same"),
                {**BASE, "maxResults": 100, "nextToken": "same"},
            )
        with pytest.raises(SourceFailure, match="same nextToken twice"):
            HoneycodeTable(client, WORKBOOK, TABLE).read()


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def test_requests_are_serialized_and_signed_for_honeycode_in_us_west_2(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-southeast-2")
    client = honeycode_client(botocore.session.get_session())
    sent: list[AWSPreparedRequest] = []

    def answer(request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        sent.append(request)
        body = {"columnIds": [COLUMN_IDS["EventName"]], "rows": [], "workbookCursor": 1}
        return AWSResponse(request.url, 200, {}, _Raw(json.dumps(body).encode()))

    client.meta.events.register("before-send.honeycode.ListTableRows", answer)
    response = client.list_table_rows(workbookId=WORKBOOK, tableId=TABLE, maxResults=100)
    assert response["rows"] == []
    (request,) = sent
    assert request.method == "POST"
    assert (
        request.url
        == f"https://honeycode.us-west-2.amazonaws.com/workbooks/{WORKBOOK}/tables/{TABLE}/rows/list"
    )
    assert json.loads(request.body or b"{}") == {"maxResults": 100}
    authorization = request.headers["Authorization"].decode()
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=testing/")
    assert "/us-west-2/honeycode/aws4_request" in authorization


@pytest.mark.parametrize(
    ("cell", "text"),
    [
        ({"format": "DATE", "rawValue": "44197", "formattedValue": "1/1/2021"}, "2021-01-01"),
        ({"format": "DATE_TIME", "rawValue": "44138.5", "formattedValue": "11/3/2020 12:00"}, "2020-11-03"),
        ({"format": "CURRENCY", "rawValue": "500.5", "formattedValue": "$500.50"}, "500.5"),
        ({"format": "TEXT", "rawValue": "9999-99-99", "formattedValue": "9999-99-99"}, "9999-99-99"),
        ({"format": "AUTO", "formula": "=Rules[EventName]", "formattedValue": "greenbutton"}, "greenbutton"),
        # Left on AUTO, detected as a date: the serial, not the locale's display form.
        ({"format": "AUTO", "rawValue": "44197", "formattedValue": "1/1/2021"}, "2021-01-01"),
        ({"rawValue": "46143.375", "formattedValue": "5/1/2026 9:00 AM"}, "2026-05-01"),
        ({"format": "AUTO", "rawValue": "2026-05-01", "formattedValue": "2026-05-01"}, "2026-05-01"),
        ({"format": "AUTO", "rawValue": "12", "formattedValue": "12"}, "12"),
        ({"format": "ROWSET", "rawValue": "rows:t/[r1,r2]", "formattedValues": ["web", "ios"]}, "web, ios"),
        ({}, ""),
    ],
)
def test_cells_are_read_as_the_value_the_marketer_typed(cell: dict[str, str], text: str) -> None:
    assert cell_text(cell) == text


def test_the_report_goes_to_the_rules_bucket_when_there_is_one(client: Any) -> None:
    stored: list[tuple[str, ValidationReport]] = []

    class Store:
        def put_report(self, name: str, report: ValidationReport) -> str | None:
            stored.append((name, report))
            return f"s3://rules/{name}"

    report = ValidationReport("honeycode", (ReportLine(1, RowStatus.OK, "trk_x", ""),))
    assert HoneycodeTable(client, WORKBOOK, TABLE).write_report(report) is None
    location = HoneycodeTable(client, WORKBOOK, TABLE, reports=Store()).write_report(report)
    assert location == f"s3://rules/honeycode-{TABLE}.report.json" and stored[0][1] is report
