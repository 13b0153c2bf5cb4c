"""Rule files in (CSV, Honeycode CSV export, XLSX) and the validation report out."""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
import zipfile
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook

from pia.rules.sheets import (
    ReportLine,
    RowStatus,
    SheetError,
    ValidationReport,
    build_report,
    read_table,
    render_csv,
    render_json,
    render_report,
    render_text,
)
from pia.rules.table import parse_rules, parse_table
from pia_cli.rule_template import TEMPLATE_COLUMNS, write_template
from tests.conftest import CASE_GREENBUTTON as GREEN
from tests.conftest import CASE_PURCHASE as PURCHASE
from tests.conftest import RULE_HEADER

# A Honeycode CSV export: UTF-8 with a byte-order mark, CRLF, every cell quoted, the derived Key column.
HONEYCODE_EXPORT = (
    "\ufeff"
    + "\r\n".join(
        ",".join(f'"{c}"' for c in row)
        for row in [
            [*RULE_HEADER, "Key"],
            [*GREEN, "aggregator-greenbutton-na-na"],
            [*PURCHASE, "date-purchase-na-na"],
        ]
    )
    + "\r\n"
).encode()


def xlsx(rows: list[list[object]], title: str = "Sheet") -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = title
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def test_a_honeycode_csv_export_imports_unchanged() -> None:
    table = read_table("export.csv", HONEYCODE_EXPORT)
    assert table.headers == (*RULE_HEADER, "Key")
    result = parse_table(table)
    assert result.issues == ()
    assert [(r.row, r.output_name) for r in result.rules] == [
        (2, "trk_greenbutton"),
        (3, "trk_date_purchase"),
    ]


def test_csv_rows_keep_spreadsheet_numbers_across_blank_lines_and_multiline_cells() -> None:
    text = ",".join(RULE_HEADER) + "\n\n" + ",".join(GREEN) + '\n"a\nb",x\n' + ",".join(PURCHASE) + "\n"
    table = read_table("rules.csv", text.encode())
    assert [n for n, _ in table.rows] == [3, 4, 5]
    assert table.rows[1][1]["RuleType"] == "a\nb"


def test_semicolon_csv_from_a_european_excel_is_read() -> None:
    text = ";".join(RULE_HEADER) + "\r\n" + ";".join(GREEN) + "\r\n"
    (rule,) = parse_table(read_table("rules.csv", text.encode())).rules
    assert rule.output_name == "trk_greenbutton"


def test_csv_that_is_not_utf8_fails_as_a_whole_with_a_fix() -> None:
    text = ",".join(RULE_HEADER) + "\n" + ",".join(GREEN).replace("greenbutton", "grünbutton") + "\n"
    with pytest.raises(SheetError, match="save the file as CSV UTF-8"):
        read_table("rules.csv", text.encode("cp1252"))


def test_an_empty_file_and_an_unknown_extension_fail_as_a_whole() -> None:
    with pytest.raises(SheetError, match="empty"):
        read_table("rules.csv", b"\xef\xbb\xbf\r\n")
    with pytest.raises(SheetError, match=r"only \.csv and \.xlsx"):
        read_table("rules.numbers", b"x")
    with pytest.raises(SheetError, match="not a readable XLSX"):
        read_table("rules.xlsx", b"PK\x03\x04 truncated")


def test_xlsx_formula_cells_come_back_as_their_literal_text_never_evaluated() -> None:
    formula = '=HYPERLINK("https://evil.example","click")'
    data = xlsx([list(RULE_HEADER), [*GREEN[:1], formula, *GREEN[2:]], PURCHASE])
    with_formula = load_workbook(io.BytesIO(data)).active
    assert with_formula is not None and with_formula["B2"].data_type == "f"

    table = read_table("rules.xlsx", data)
    assert table.rows[0][1]["EventName"] == formula
    result = parse_table(table)
    assert [(e.row, e.column) for e in result.errors] == [(2, "EventName")]
    assert [r.output_name for r in result.rules] == ["trk_date_purchase"]


def test_xlsx_text_cell_starting_with_equals_stays_text() -> None:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(list(RULE_HEADER))
    sheet.append(GREEN)
    sheet["B2"].value = "=1+1"
    sheet["B2"].data_type = "s"
    buffer = io.BytesIO()
    workbook.save(buffer)
    assert read_table("rules.xlsx", buffer.getvalue()).rows[0][1]["EventName"] == "=1+1"


def test_xlsx_typed_cells_dates_numbers_booleans_are_read_as_written() -> None:
    row: list[object] = [*PURCHASE[:7], 500.25, "no", datetime(2021, 1, 1), datetime(2021, 2, 1), True]
    data = xlsx([[*RULE_HEADER, "Enabled"], row], title="Rules")
    (rule,) = parse_table(read_table("rules.xlsx", data)).rules
    assert rule.start_date is not None and rule.start_date.isoformat() == "2021-01-01"
    assert rule.sum_condition is not None and str(rule.sum_condition.target) == "500.25"


def test_xlsx_prefers_the_sheet_named_rules() -> None:
    workbook = Workbook()
    notes = workbook.active
    assert notes is not None
    notes.title = "Notes"
    notes.append(["not", "a", "rule", "table"])
    rules = workbook.create_sheet("rules")
    rules.append(list(RULE_HEADER))
    rules.append(GREEN)
    buffer = io.BytesIO()
    workbook.save(buffer)
    assert [r.output_name for r in parse_table(read_table("x.xlsx", buffer.getvalue())).rules] == [
        "trk_greenbutton"
    ]


def test_the_template_has_dropdowns_a_date_comment_and_valid_examples(tmp_path: Path) -> None:
    path = tmp_path / "rules.xlsx"
    write_template(path)
    sheet = load_workbook(path)["Rules"]
    header = [c.value for c in sheet[1]]
    assert tuple(header) == TEMPLATE_COLUMNS
    lists = {
        header[sheet[str(v.sqref).split(":")[0]].column - 1]: v.formula1
        for v in sheet.data_validations.dataValidation
    }
    assert lists["RuleType"] == '"aggregator,date"'
    assert "greater" in lists["Operator-C"] and lists["Operator-C"] == lists["Operator-V"][:-1] + ',absent"'
    assert "absent" not in lists["Operator-V"], "only a count can be absent"
    assert lists["ResetWhenReachTarget"] == '"yes,no"'
    comment = sheet.cell(row=1, column=header.index("StartDate") + 1).comment
    assert comment is not None and "YYYY-MM-DD" in comment.text and "9999-99-99" in comment.text
    result = parse_table(read_table(path.name, path.read_bytes()))
    assert result.issues == ()
    assert [r.output_name for r in result.rules] == [
        "trk_greenbutton",
        "trk_course_completed",
        "trk_date_purchase",
        "trk_ltv",
    ]
    assert lists["Aggregate"] == '"count,sum,avg,min,max,distinct(attribute)"'
    assert lists["Output"] == '"ready,value"'
    (ltv,) = [r for r in result.rules if r.writes_value]
    assert (ltv.aggregate_text, ltv.metric_name) == ("sum", "price")


def test_the_aggregate_dropdown_suggests_but_takes_any_distinct_attribute(tmp_path: Path) -> None:
    path = tmp_path / "rules.xlsx"
    write_template(path)
    sheet = load_workbook(path)["Rules"]
    header = [c.value for c in sheet[1]]
    shown = {
        header[sheet[str(v.sqref).split(":")[0]].column - 1]: v.showErrorMessage
        for v in sheet.data_validations.dataValidation
    }
    assert shown["Aggregate"] is False and shown["Output"] is True
    comment = sheet.cell(row=1, column=header.index("Aggregate") + 1).comment
    assert comment is not None and "distinct(attribute)" in comment.text and "1000" in comment.text


def test_the_template_explains_the_filter_column_with_an_example_that_parses(tmp_path: Path) -> None:
    path = tmp_path / "rules.xlsx"
    write_template(path)
    workbook = load_workbook(path)
    sheet = workbook["Rules"]
    header = [c.value for c in sheet[1]]
    comment = sheet.cell(row=1, column=header.index("Filter") + 1).comment
    assert comment is not None
    example = re.search(r"for example: (.*?)\. ", comment.text)
    assert example is not None
    sheet.cell(row=2, column=header.index("Filter") + 1, value=example.group(1))
    sheet.cell(row=2, column=header.index("OutputName") + 1, value="trk_fr_premium")
    buffer = io.BytesIO()
    workbook.save(buffer)
    rules = parse_table(read_table("x.xlsx", buffer.getvalue())).rules
    assert rules[0].filter is not None
    assert rules[0].filter.canonical == 'country = "FR" and plan in ("gold", "silver") and price >= 20'


def test_the_template_suggests_caps_that_parse_and_accepts_typed_ones(tmp_path: Path) -> None:
    path = tmp_path / "rules.xlsx"
    write_template(path)
    sheet = load_workbook(path)["Rules"]
    header = [c.value for c in sheet[1]]
    (cap_list,) = [
        v
        for v in sheet.data_validations.dataValidation
        if header[sheet[str(v.sqref).split(":")[0]].column - 1] == "Cap"
    ]
    assert not cap_list.showErrorMessage, "1 per 3 days is valid though not in the list"
    choices = cap_list.formula1.strip('"').split(",")
    assert {"once", "3 per day", "1 per 7 days"} <= set(choices)
    for choice in choices:
        row = {**dict(zip(TEMPLATE_COLUMNS, [c.value for c in sheet[3]], strict=True)), "Cap": choice}
        result = parse_rules([(3, {k: "" if v is None else str(v) for k, v in row.items()})])
        assert not result.issues, (choice, result.issues)
        assert (result.rules[0].cap is None) == (choice == "na")


def test_report_has_one_line_per_row_with_status_and_message() -> None:
    text = "\n".join(
        [
            ",".join([*RULE_HEADER, "Enabled"]),
            ",".join([*GREEN, "yes"]),
            ",".join([*GREEN[:6], "bigger", *GREEN[7:], "yes"]),
            ",".join([*PURCHASE[:5], "5.5", *PURCHASE[6:], "yes"]).replace(",na,5.5,", ",greater,5.5,"),
            ",".join([*GREEN[:5], "9", *GREEN[6:], "no"]),
        ]
    )
    report = build_report("rules.csv", parse_table(read_table("rules.csv", text.encode())))
    assert [(line.row, line.status) for line in report.lines] == [
        (2, RowStatus.OK),
        (3, RowStatus.ERROR),
        (4, RowStatus.WARNING),
        (5, RowStatus.DISABLED),
    ]
    assert report.lines[0].output_name == "trk_greenbutton"
    assert report.lines[1].message.startswith('error in Operator-V: "bigger" is not an operator')
    assert "not a whole number" in report.lines[2].message
    assert report.has_errors
    assert report.summary == "rules.csv: 4 rows, 2 live, 1 with errors, 1 with warnings, 1 disabled"


def test_report_cells_that_a_spreadsheet_would_run_are_escaped() -> None:
    lines = tuple(
        ReportLine(n, RowStatus.ERROR, output, message)
        for n, output, message in [
            (2, '=HYPERLINK("http://x")', "plain"),
            (3, "+cmd", "-2+3"),
            (4, "@SUM(A1)", "\tTAB"),
            (5, "trk_ok", '"=quoted" stays'),
        ]
    )
    report = ValidationReport("rules.csv", lines)
    parsed = list(csv.reader(io.StringIO(render_csv(report).decode("utf-8-sig"))))
    assert parsed[0] == ["row", "status", "output_name", "message"]
    assert [row[2] for row in parsed[1:]] == ['\'=HYPERLINK("http://x")', "'+cmd", "'@SUM(A1)", "trk_ok"]
    assert [row[3] for row in parsed[1:]] == ["plain", "'-2+3", "\\x09TAB", '"=quoted" stays']
    assert "'=HYPERLINK" in render_text(report)


def test_json_report_keeps_values_as_they_are_and_counts_statuses() -> None:
    report = ValidationReport("honeycode:wb/t", (ReportLine(2, RowStatus.ERROR, "=x", "bad"),))
    document = json.loads(render_report(report, "rules/honeycode.report.json"))
    assert document["rows"] == [{"row": 2, "status": "error", "output_name": "=x", "message": "bad"}]
    assert document["summary"]["error"] == 1 and document["source"] == "honeycode:wb/t"
    assert render_report(report, "rules/x.report.csv") == render_csv(report)
    assert render_json(report) == render_report(report, "x.JSON")


# Issue #15: what a hostile file can do to the reader and to the terminal.

ESCAPES = "\x1b]0;owned\x07\x1b[2J\x9b31m\u202e"


def unprintable(text: str) -> list[str]:
    return [c for c in text if (ord(c) < 32 and c not in "\r\n") or 0x7F <= ord(c) <= 0x9F or c == "\u202e"]


@pytest.mark.parametrize("output", ["text", "csv", "json"])
def test_validate_prints_no_terminal_escape_sequence_from_a_cell(
    output: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pia_cli.main import main

    path = tmp_path / f"rules{ESCAPES}.csv"
    rows = [RULE_HEADER, (GREEN[0], f"click{ESCAPES}", *GREEN[2:]), (*GREEN[:4], f"big{ESCAPES}", *GREEN[5:])]
    path.write_text("\n".join(",".join(row) for row in rows), encoding="utf-8")
    assert main(["rules", "validate", str(path), "--format", output]) == 1
    printed = capsys.readouterr().out
    assert unprintable(printed) == []
    if output == "json":
        assert any(ESCAPES in row["message"] for row in json.loads(printed)["rows"])
    else:
        assert "\\x1b]0;owned\\x07" in printed


def with_part(base: bytes, name: str, chunks: Iterable[str], *, before: str | None = None) -> bytes:
    """``base`` with the part ``name`` replaced or added, written as a stream so the test never
    holds the unpacked bomb: ``chunks`` go in place of the original, or just before its tag ``before``."""
    source = zipfile.ZipFile(io.BytesIO(base))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            if info.filename != name:
                target.writestr(info, source.read(info.filename))
        original = source.read(name).decode() if before else ""
        cut = original.index(before) if before else 0
        with target.open(name, "w") as part:
            part.write(original[:cut].encode())
            for chunk in chunks:
                part.write(chunk.encode())
            part.write(original[cut:].encode())
    return out.getvalue()


def with_shared_strings(base: bytes, part: str, chunks: Iterable[str]) -> bytes:
    """Declare ``part`` as the workbook's shared strings (openpyxl finds it by content type)."""
    types = zipfile.ZipFile(io.BytesIO(base)).read("[Content_Types].xml").decode()
    override = (
        f'<Override PartName="/{part}" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
    )
    declared = with_part(
        base, "[Content_Types].xml", iter([types.replace("</Types>", override + "</Types>")])
    )
    return with_part(declared, part, chunks)


def repeated(text: str, times: int, then: str) -> Iterator[str]:
    batch = 100_000
    for start in range(0, times, batch):
        yield text * min(batch, times - start)
    yield then


RULES_XLSX = xlsx([list(RULE_HEADER), list(GREEN)], title="Rules")


@pytest.mark.parametrize(
    ("name", "chunks", "reason"),
    [
        # A 2 million blank rows bomb (about 30 KB packed): openpyxl walks every row.
        (
            "xl/worksheets/sheet1.xml",
            repeated("<row/>", 2_000_000, ""),
            "rows",
        ),
        # One cell in the last column pads every row to 16,384 values.
        (
            "xl/worksheets/sheet1.xml",
            iter(['<row r="3"><c r="XFD3" t="inlineStr"><is><t>x</t></is></c></row>']),
            "columns",
        ),
    ],
)
def test_xlsx_bombs_are_refused_before_they_are_unpacked(
    name: str, chunks: Iterator[str], reason: str
) -> None:
    bomb = with_part(RULES_XLSX, name, chunks, before="</sheetData>")
    assert len(bomb) < 400_000
    with pytest.raises(SheetError, match=reason):
        read_table("rules.xlsx", bomb)


def test_five_million_shared_strings_are_refused_before_openpyxl_holds_them() -> None:
    """About 200 KB packed; openpyxl kept every string and its element in memory (525 MB). The part
    has an unusual name: openpyxl finds it by its content type, so the guard must too."""
    strings = repeated("<si><t/></si>", 5_000_000, "</sst>")
    head = '<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    bomb = with_shared_strings(RULES_XLSX, "xl/words.xml", itertools.chain([head], strings))
    assert len(bomb) < 400_000
    with pytest.raises(SheetError, match="shared strings"):
        read_table("rules.xlsx", bomb)


def test_a_sheet_claiming_a_huge_used_range_is_refused() -> None:
    sheet = zipfile.ZipFile(io.BytesIO(RULES_XLSX)).read("xl/worksheets/sheet1.xml").decode()
    claimed = re.sub(r'<dimension ref="[^"]*"', '<dimension ref="A1:P2000000"', sheet)
    bomb = with_part(RULES_XLSX, "xl/worksheets/sheet1.xml", iter([claimed]))
    with pytest.raises(SheetError, match="rows"):
        read_table("rules.xlsx", bomb)


def test_a_part_that_unpacks_beyond_the_limit_is_refused_unread() -> None:
    bomb = with_part(RULES_XLSX, "docProps/app.xml", repeated(" ", 70_000_000, ""))
    with pytest.raises(SheetError, match=r"docProps/app\.xml unpacks to"):
        read_table("rules.xlsx", bomb)


def test_a_table_at_the_row_limit_with_blank_rows_around_it_still_reads() -> None:
    rows: list[list[object]] = [list(RULE_HEADER)]
    rows += [[*GREEN[:5], str(n), *GREEN[6:]] for n in range(6, 6 + 10_000)]
    data = xlsx(rows, title="Rules")
    padded = with_part(
        data, "xl/worksheets/sheet1.xml", repeated("<row/>", 20_000, ""), before="</sheetData>"
    )
    assert len(read_table("rules.xlsx", padded).rows) == 10_000


def test_a_file_over_10_mb_is_refused_by_validate_as_by_the_poller() -> None:
    big = (",".join(RULE_HEADER) + "\n" + "#" * (10 * 1024 * 1024)).encode()
    with pytest.raises(SheetError, match="over 10 MB"):
        read_table("rules.csv", big)
