"""Spreadsheet files in and out: the rule table from CSV or XLSX, and the validation report back.

Cells are data, never code. XLSX is read with openpyxl in read-only mode and formulas are neither
evaluated nor replaced by a cached result: a cell holding ``=HYPERLINK(...)`` comes back as that
literal text, so the rule parser can reject it by name. The report goes the other way: any cell a
spreadsheet would run as a formula is escaped, so opening the report can never run one either.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePosixPath
from typing import IO, Any
from xml.parsers import expat

from openpyxl import load_workbook
from openpyxl.utils.exceptions import InvalidFileException

from pia.rules.table import ParseResult, RuleTable, Severity

MAX_TABLE_ROWS = 10_000
MAX_FILE_BYTES = 10 * 1024 * 1024
SHEET_NAME = "Rules"
CSV_DELIMITERS = (",", ";", "\t")
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


class SheetError(ValueError):
    """The file as a whole cannot be read: not a CSV or XLSX, not UTF-8, no header, too large."""


class SheetFormat(StrEnum):
    CSV = "csv"
    XLSX = "xlsx"


def sheet_format(name: str) -> SheetFormat:
    suffix = PurePosixPath(name).suffix.lower()
    if suffix == ".csv":
        return SheetFormat.CSV
    if suffix == ".xlsx":
        return SheetFormat.XLSX
    raise SheetError(f"{PurePosixPath(name).name}: only .csv and .xlsx rule files are read")


def read_table(name: str, data: bytes) -> RuleTable:
    """Read a rule file by its extension; ``name`` is also what the table reports as its source."""
    kind = sheet_format(name)
    if len(data) > MAX_FILE_BYTES:
        raise SheetError(
            f"the file is over {MAX_FILE_BYTES // (1024 * 1024)} MB; a rule table is far smaller"
        )
    if kind is SheetFormat.CSV:
        return RuleTable(name, *_numbered(_csv_rows(data)))
    return RuleTable(name, *_numbered(_xlsx_rows(data)))


def _csv_rows(data: bytes) -> Iterator[tuple[int, list[object]]]:
    """Rows of a CSV (Excel, Google Sheets or a Honeycode export), numbered as a spreadsheet shows them.

    ``utf-8-sig`` drops the byte-order mark Excel and Honeycode put first. Other encodings are
    refused rather than guessed, because a wrong guess silently changes event names.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SheetError(f"not UTF-8 text (byte {exc.start}); save the file as CSV UTF-8") from None
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = max(CSV_DELIMITERS, key=first_line.count)
    try:
        for number, cells in enumerate(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), 1):
            yield number, list(cells)
    except csv.Error as exc:
        raise SheetError(f"not a readable CSV file: {exc}") from None


MAX_XLSX_PART_BYTES = 64 * 1024 * 1024
MAX_SHEET_ROWS = 5 * MAX_TABLE_ROWS
MAX_SHEET_COLUMNS = 256
MAX_SHEET_CELLS = 1_000_000
MAX_SHARED_STRINGS = 200_000
"""An XLSX is a zip of XML, and a small file can unpack to a huge one: 280 KB held 2 million blank
rows, and 203 KB held 5 million shared strings that openpyxl keeps in memory (525 MB). So the zip
directory and a streaming scan of the XML (which builds nothing) are checked against these bounds
before openpyxl reads anything. They leave room for a table at MAX_TABLE_ROWS with blank rows and
note columns around it, in every sheet of the workbook."""


class _OverLimit(Exception):
    pass


def _local(tag: str) -> str:
    return tag.rsplit(" ", 1)[-1].rsplit(":", 1)[-1]


_CELL_REFERENCE = re.compile(r"\$?([A-Za-z]{1,3})\$?(\d{1,9})")


def _reference(text: str) -> tuple[int, int]:
    """``XFD1048576`` as (column 16384, row 1048576)."""
    match = _CELL_REFERENCE.fullmatch(text.strip())
    if match is None:
        raise _OverLimit(f'cell reference "{text[:20]}" is not one a spreadsheet writes')
    column = 0
    for letter in match.group(1).upper():
        column = column * 26 + ord(letter) - ord("A") + 1
    return column, int(match.group(2))


@dataclass
class _PartShape:
    """Follows one XML part's rows, cells and shared strings as openpyxl numbers them, keeping only
    counters. Every XML part is followed, whatever its name: openpyxl finds the sheets and the
    shared strings through the package's own pointers, so a renamed part is read all the same."""

    part: str
    row: int = 0
    column: int = 0
    cells: int = 0
    strings: int = 0

    def start(self, tag: str, attributes: dict[str, str]) -> None:
        name = _local(tag)
        if name == "si":
            self.strings += 1
            if self.strings > MAX_SHARED_STRINGS:
                raise _OverLimit(
                    f"{self.part} has more than {MAX_SHARED_STRINGS} shared strings"
                    "; a rule table has far fewer"
                )
        elif name == "dimension":
            last = attributes.get("ref", "A1").split(":")[-1]
            self._check(*_reference(last), claimed=True)
        elif name == "row":
            self.row = int(attributes["r"]) if attributes.get("r", "").isdigit() else self.row + 1
            self.column = 0
            self._check(0, self.row)
        elif name == "c":
            reference = attributes.get("r")
            self.column = _reference(reference)[0] if reference else self.column + 1
            self.cells += 1
            self._check(self.column, self.row)

    def _check(self, column: int, row: int, claimed: bool = False) -> None:
        where = f"{self.part} {'claims' if claimed else 'has'}"
        if row > MAX_SHEET_ROWS:
            raise _OverLimit(
                f"{where} rows down to row {row}; a rule table has at most {MAX_SHEET_ROWS} rows"
            )
        if column > MAX_SHEET_COLUMNS:
            raise _OverLimit(
                f"{where} {column} columns; a rule table has at most {MAX_SHEET_COLUMNS} columns"
            )
        if self.cells > MAX_SHEET_CELLS:
            raise _OverLimit(f"{where} more than {MAX_SHEET_CELLS} cells")


def _scan(stream: IO[bytes], scanner: _PartShape) -> None:
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.StartElementHandler = scanner.start
    first = stream.read(1 << 16)
    if not first.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        return  # not XML (an image, say), which openpyxl never parses
    parser.Parse(first, False)
    while chunk := stream.read(1 << 16):
        parser.Parse(chunk, False)
    parser.Parse(b"", True)


def _check_xlsx(data: bytes) -> None:
    """Refuse a workbook that would unpack, or expand in openpyxl, far beyond any rule table."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            parts = archive.infolist()
            for info in parts:
                if info.file_size > MAX_XLSX_PART_BYTES:
                    raise _OverLimit(
                        f"{info.filename} unpacks to {info.file_size // (1024 * 1024)} MB; "
                        f"a rule table's parts are at most {MAX_XLSX_PART_BYTES // (1024 * 1024)} MB"
                    )
            for info in parts:
                if not info.is_dir() and not info.filename.lower().endswith(".vml"):
                    with archive.open(info) as stream:
                        _scan(stream, _PartShape(info.filename))
    except _OverLimit as exc:
        raise SheetError(f"not read: {exc}") from None
    except (zipfile.BadZipFile, expat.ExpatError, OSError, ValueError, KeyError) as exc:
        raise SheetError(f"not a readable XLSX file ({type(exc).__name__})") from None


def _xlsx_rows(data: bytes) -> Iterator[tuple[int, list[object]]]:
    _check_xlsx(data)
    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise SheetError(f"not a readable XLSX file ({type(exc).__name__})") from None
    try:
        names = {n.lower(): n for n in workbook.sheetnames}
        sheet = workbook[names.get(SHEET_NAME.lower(), workbook.sheetnames[0])]
        for number, values in enumerate(sheet.iter_rows(values_only=True), 1):
            yield number, list(values)
    finally:
        workbook.close()


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _numbered(
    rows: Iterable[tuple[int, list[object]]],
) -> tuple[tuple[str, ...], tuple[tuple[int, dict[str, object]], ...]]:
    """The first non-empty row is the header; every later row maps header -> cell, under its number."""
    header: list[str] | None = None
    table: list[tuple[int, dict[str, object]]] = []
    for number, values in rows:
        if all(_blank(v) for v in values):
            continue
        if header is None:
            header = ["" if v is None else str(v).replace("\ufeff", "").strip() for v in values]
            continue
        if len(table) >= MAX_TABLE_ROWS:
            raise SheetError(f"more than {MAX_TABLE_ROWS} rule rows; split the table or remove unused rows")
        cells: dict[str, object] = {}
        for name, value in zip(header, values, strict=False):
            if name and name not in cells:
                cells[name] = value
        table.append((number, cells))
    if header is None:
        raise SheetError("the file is empty; the first row must name the columns")
    return tuple(h for h in header if h), tuple(table)


class RowStatus(StrEnum):
    OK = "ok"
    WARNING = "warning"
    ERROR = "error"
    DISABLED = "disabled"


@dataclass(frozen=True)
class ReportLine:
    row: int
    status: RowStatus
    output_name: str
    message: str


@dataclass(frozen=True)
class ValidationReport:
    """One line per row of the table, in row order; ``row`` 1 with column ``header`` when the table
    as a whole could not be read."""

    source: str
    lines: tuple[ReportLine, ...]

    def count(self, status: RowStatus) -> int:
        return sum(1 for line in self.lines if line.status is status)

    @property
    def has_errors(self) -> bool:
        return any(line.status is RowStatus.ERROR for line in self.lines)

    @property
    def summary(self) -> str:
        live = self.count(RowStatus.OK) + self.count(RowStatus.WARNING)
        return (
            f"{self.source}: {len(self.lines)} rows, {live} live, {self.count(RowStatus.ERROR)} with errors, "
            f"{self.count(RowStatus.WARNING)} with warnings, {self.count(RowStatus.DISABLED)} disabled"
        )


def build_report(source: str, result: ParseResult) -> ValidationReport:
    outputs = {rule.row: rule.output_name for rule in result.rules}
    disabled = set(result.disabled_rows)
    lines: list[ReportLine] = []
    for row in sorted(set(result.row_numbers) | {i.row for i in result.issues}):
        issues = [i for i in result.issues if i.row == row]
        if any(i.severity is Severity.ERROR for i in issues):
            status = RowStatus.ERROR
        elif row in disabled:
            status = RowStatus.DISABLED
        elif issues:
            status = RowStatus.WARNING
        else:
            status = RowStatus.OK
        message = "; ".join(f"{i.severity.value} in {i.column}: {i.message}" for i in issues)
        lines.append(ReportLine(row, status, outputs.get(row, ""), message))
    return ValidationReport(source, tuple(lines))


def table_failure_report(source: str, reason: str) -> ValidationReport:
    return ValidationReport(source, (ReportLine(1, RowStatus.ERROR, "", f"error in header: {reason}"),))


REPORT_COLUMNS = ("row", "status", "output_name", "message")


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
"""Controls (a terminal runs ``ESC [ ...`` and ``CSI``), line separators, and the bidirectional
overrides that make text show other than it reads. Cell text reaches every report through its
messages, so none of these is ever printed as it is."""


_UNPRINTABLE_IN_JSON = re.compile(r"[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control character written as its escape (``ESC`` as ``\\x1b``)."""
    return _UNPRINTABLE.sub(_visible, text)


def escape_cell(text: str) -> str:
    """OWASP's CSV-injection rule: a leading quote makes a spreadsheet show the cell as text."""
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


def _report_rows(report: ValidationReport) -> Iterator[list[str]]:
    for line in report.lines:
        yield [
            escape_cell(printable(str(v)))
            for v in (line.row, line.status.value, line.output_name, line.message)
        ]


def render_csv(report: ValidationReport) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(REPORT_COLUMNS)
    writer.writerows(_report_rows(report))
    return buffer.getvalue().encode("utf-8-sig")


def render_json(report: ValidationReport) -> bytes:
    document: dict[str, Any] = {
        "source": report.source,
        "summary": {status.value: report.count(status) for status in RowStatus},
        "rows": [
            {
                "row": line.row,
                "status": line.status.value,
                "output_name": line.output_name,
                "message": line.message,
            }
            for line in report.lines
        ],
    }
    # json escapes C0 controls itself; the rest become \\u escapes, which decode to the same text.
    text = json.dumps(document, indent=2, ensure_ascii=False)
    return _UNPRINTABLE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text).encode()


def render_text(report: ValidationReport) -> str:
    """The report as the terminal shows it (``pia rules validate``)."""
    rows: Sequence[list[str]] = [list(REPORT_COLUMNS), *_report_rows(report)]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    body = ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
    return "\n".join([printable(report.summary), *(line.rstrip() for line in body)]) + "\n"


def render_report(report: ValidationReport, name: str) -> bytes:
    """Rendered by the report's file name: ``.json`` as JSON, anything else as CSV."""
    return render_json(report) if name.lower().endswith(".json") else render_csv(report)
