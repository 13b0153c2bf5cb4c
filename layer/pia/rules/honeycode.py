"""Amazon Honeycode as a rule source: the table the original solution read.

Honeycode was retired on 2024-02-29 and current botocore no longer ships its model, so the two
read operations used here ship with this module (``pia/data``) and are loaded through botocore's
own loader search path: the client is an ordinary botocore client that validates and signs every
request. Honeycode only ever ran in us-west-2, so the client is always made there.

Columns are looked up by name through ``ListTableColumns``; cells are matched to columns by the
column ids each ``ListTableRows`` page lists, so column order never matters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Protocol

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from pia.rules.sheets import ValidationReport
from pia.rules.source import SourceFailure
from pia.rules.table import RuleTable

MODEL_ROOT = Path(__file__).resolve().parent / "data"
HONEYCODE_REGION = "us-west-2"
PAGE_SIZE = 100
MAX_PAGES = 1_000
SERIAL_EPOCH = date(1899, 12, 30)
DATE_FORMATS = frozenset({"DATE", "DATE_TIME"})
NUMBER_FORMATS = frozenset({"NUMBER", "CURRENCY", "PERCENTAGE", "ACCOUNTING"})


def register_model(session: botocore.session.Session) -> botocore.session.Session:
    """Put the shipped model on a botocore session's loader search path (what ``AWS_DATA_PATH``
    does for a fresh process), so ``session.create_client("honeycode")`` finds it."""
    paths = session.get_component("data_loader").search_paths
    if str(MODEL_ROOT) not in paths:
        paths.insert(0, str(MODEL_ROOT))
    return session


def honeycode_client(session: botocore.session.Session | None = None, config: Config | None = None) -> Any:
    """A Honeycode client in us-west-2, whatever region the stack runs in."""
    core = register_model(session or botocore.session.get_session())
    return core.create_client("honeycode", region_name=HONEYCODE_REGION, config=config)


class ReportStore(Protocol):
    def put_report(self, name: str, report: ValidationReport) -> str | None: ...


def cell_text(cell: Mapping[str, Any]) -> str:
    """The value a marketer typed. Dates come as day serials (44197 is 2021-01-01), numbers as plain
    digits in ``rawValue`` (``formattedValue`` may hold currency signs or separators), multi-select
    (``ROWSET``) cells as the list ``formattedValues``, text as is.

    A cell left on ``AUTO`` that Honeycode detected as a date still answers with the serial in
    ``rawValue`` and a display form such as ``1/1/2021`` in ``formattedValue``; the serial is read,
    since the display form depends on the workbook's locale and is not a date the rules accept.
    """
    cell_format = cell.get("format") or "AUTO"
    raw = cell.get("rawValue")
    if raw is not None and (cell_format in DATE_FORMATS or (cell_format == "AUTO" and _auto_date(cell))):
        try:
            return (SERIAL_EPOCH + timedelta(days=int(float(raw)))).isoformat()
        except (ValueError, OverflowError):
            return str(cell.get("formattedValue", raw))
    if raw is not None and cell_format in NUMBER_FORMATS:
        return str(raw)
    values = cell.get("formattedValues")
    if cell_format == "ROWSET" or (values and "formattedValue" not in cell):
        return ", ".join(str(v) for v in values or ())
    value = cell.get("formattedValue", raw)
    return "" if value is None else str(value)


_DISPLAYED_DATE = re.compile(r"\d{1,4}[/.-]\d{1,2}[/.-]\d{1,4}(\s.*)?")
_SERIAL = re.compile(r"\d+(\.\d+)?")


def _auto_date(cell: Mapping[str, Any]) -> bool:
    """An AUTO cell detected as a date: a day serial shown as a date. Typed text such as
    ``2026-05-01`` has the same raw and formatted value, so it is left as typed."""
    raw, shown = str(cell.get("rawValue", "")), str(cell.get("formattedValue", ""))
    return raw != shown and bool(_SERIAL.fullmatch(raw)) and bool(_DISPLAYED_DATE.fullmatch(shown))


class HoneycodeTable:
    """A Honeycode table read in full; rows are numbered 1.. in table order, as Honeycode shows them."""

    def __init__(
        self, client: Any, workbook_id: str, table_id: str, reports: ReportStore | None = None
    ) -> None:
        self._client = client
        self._workbook = workbook_id
        self._table = table_id
        self._reports = reports

    @property
    def description(self) -> str:
        return f"honeycode:{self._workbook}/{self._table}"

    def columns(self) -> dict[str, str]:
        """Column id -> column name, over every page."""
        names: dict[str, str] = {}
        token: str | None = None
        for _ in range(MAX_PAGES):
            kwargs: dict[str, Any] = {"workbookId": self._workbook, "tableId": self._table}
            if token:
                kwargs["nextToken"] = token
            page = self._client.list_table_columns(**kwargs)
            for column in page.get("tableColumns", []):
                names[column["tableColumnId"]] = column.get("tableColumnName", "")
            token = page.get("nextToken")
            if not token:
                return names
        raise SourceFailure(f"{self.description}: ListTableColumns never ended ({MAX_PAGES} pages)")

    def read(self) -> RuleTable:
        try:
            names = self.columns()
            rows = self._rows(names)
        except (ClientError, BotoCoreError) as exc:
            raise SourceFailure(f"{self.description}: {exc}") from exc
        return RuleTable(self.description, tuple(names.values()), rows)

    def _rows(self, names: Mapping[str, str]) -> tuple[tuple[int, dict[str, object]], ...]:
        rows: list[tuple[int, dict[str, object]]] = []
        token: str | None = None
        seen_tokens: set[str] = set()
        for _ in range(MAX_PAGES):
            kwargs: dict[str, Any] = {
                "workbookId": self._workbook,
                "tableId": self._table,
                "maxResults": PAGE_SIZE,
            }
            if token:
                kwargs["nextToken"] = token
            page = self._client.list_table_rows(**kwargs)
            column_ids = page["columnIds"]
            for row in page["rows"]:
                cells: dict[str, object] = {}
                for column_id, cell in zip(column_ids, row["cells"], strict=False):
                    cells[names.get(column_id, column_id)] = cell_text(cell)
                rows.append((len(rows) + 1, cells))
            token = page.get("nextToken")
            if not token:
                return tuple(rows)
            if token in seen_tokens:
                raise SourceFailure(f"{self.description}: ListTableRows returned the same nextToken twice")
            seen_tokens.add(token)
        raise SourceFailure(f"{self.description}: ListTableRows never ended ({MAX_PAGES} pages)")

    def write_report(self, report: ValidationReport) -> str | None:
        if self._reports is None:
            return None
        return self._reports.put_report(f"honeycode-{self._table}.report.json", report)
