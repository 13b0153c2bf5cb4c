"""Rule files in S3: the spreadsheet source, its validation reports, and ``pia rules push``.

A report is written next to its rule file as ``<name>.report.csv``. That name also ends in
``.csv``, so it matches the poller's S3 trigger: report keys are recognised and never read as rules.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from pia.rules.sheets import (
    MAX_FILE_BYTES,
    SheetError,
    ValidationReport,
    read_table,
    render_report,
    table_failure_report,
)
from pia.rules.source import SourceFailure
from pia.rules.table import RuleTable
from pia.rules.trigger import is_rule_key

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CONTENT_TYPES = {
    ".csv": "text/csv; charset=utf-8",
    ".json": "application/json",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchBucket"})
DIGEST_KEY = "report-sha256"
log = logging.getLogger(__name__)


def normalize_prefix(prefix: str) -> str:
    prefix = prefix.strip().lstrip("/")
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


def report_key_for(key: str) -> str:
    path = PurePosixPath(key)
    return str(path.with_name(f"{path.stem}.report.csv"))


@dataclass(frozen=True)
class RuleObject:
    key: str
    last_modified: datetime


class RuleBucket:
    """The rules bucket and prefix the poller watches."""

    def __init__(self, client: S3Client, bucket: str, prefix: str = "rules/") -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = normalize_prefix(prefix)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def rule_objects(self) -> list[RuleObject]:
        found: list[RuleObject] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix}
        while True:
            page = self._client.list_objects_v2(**kwargs)
            for item in page.get("Contents", []):
                if is_rule_key(item["Key"], self.prefix):
                    found.append(RuleObject(item["Key"], item["LastModified"]))
            if not page.get("IsTruncated"):
                return found
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def newest(self) -> RuleObject | None:
        """The rule file saved last (ties broken by key, so the choice is stable)."""
        return max(self.rule_objects(), key=lambda o: (o.last_modified, o.key), default=None)

    def get(self, key: str) -> bytes:
        response = self._client.get_object(Bucket=self.bucket, Key=key)
        if response.get("ContentLength", 0) > MAX_FILE_BYTES:
            response["Body"].close()
            raise SheetError(
                f"{key} is over {MAX_FILE_BYTES // (1024 * 1024)} MB; a rule table is far smaller"
            )
        return response["Body"].read()

    def put(self, key: str, body: bytes, metadata: dict[str, str] | None = None) -> str:
        content_type = CONTENT_TYPES.get(PurePosixPath(key).suffix.lower(), "application/octet-stream")
        self._client.put_object(
            Bucket=self.bucket, Key=key, Body=body, ContentType=content_type, Metadata=metadata or {}
        )
        return self.uri(key)

    def _stored_digest(self, key: str) -> str | None:
        try:
            return self._client.head_object(Bucket=self.bucket, Key=key).get("Metadata", {}).get(DIGEST_KEY)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) in MISSING_CODES:
                return None
            raise

    def put_report(self, name: str, report: ValidationReport) -> str | None:
        """Reports are a courtesy: failing to store one is logged, never raised. An identical report
        is not rewritten: the schedule re-reads an unchanged file every few minutes, and each write
        under the prefix would wake the poller again through its S3 trigger."""
        key = name if name.startswith(self.prefix) else self.prefix + name
        body = render_report(report, key)
        digest = hashlib.sha256(body).hexdigest()
        try:
            if self._stored_digest(key) == digest:
                return self.uri(key)
            return self.put(key, body, {DIGEST_KEY: digest})
        except (ClientError, BotoCoreError) as exc:
            log.warning("validation report %s not stored: %s", key, exc)
            return None


class S3RuleFile:
    """One rule file (CSV or XLSX) in the rules bucket, as a poller source."""

    def __init__(self, bucket: RuleBucket, key: str) -> None:
        self._bucket = bucket
        self.key = key

    @property
    def description(self) -> str:
        return self._bucket.uri(self.key)

    def read(self) -> RuleTable:
        try:
            data = self._bucket.get(self.key)
        except SheetError as exc:
            raise SourceFailure(f"{self.description}: {exc}") from exc
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            raise SourceFailure(f"{self.description}: {exc}", missing=code in MISSING_CODES) from exc
        except BotoCoreError as exc:
            raise SourceFailure(f"{self.description}: {exc}") from exc
        try:
            return read_table(self.description, data)
        except SheetError as exc:
            self.write_report(table_failure_report(self.description, str(exc)))
            raise SourceFailure(f"{self.description}: {exc}") from exc

    def write_report(self, report: ValidationReport) -> str | None:
        return self._bucket.put_report(report_key_for(self.key), report)


class NoRuleFile:
    """The spreadsheet source when the prefix holds no rule file yet."""

    def __init__(self, bucket: RuleBucket) -> None:
        self._bucket = bucket

    @property
    def description(self) -> str:
        return self._bucket.uri(self._bucket.prefix)

    def read(self) -> RuleTable:
        raise SourceFailure(f"no .csv or .xlsx rule file under {self.description}", missing=True)

    def write_report(self, report: ValidationReport) -> str | None:
        return None
