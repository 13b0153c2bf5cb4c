"""Which rule file a poller run reads, decided by what started the run.

The schedule reads the newest rule file under the prefix. An upload reads the uploaded file, unless
a newer rule file has been saved since: a late S3 notification must never bring back older rules.
A notification that names no rule file of the watched bucket and prefix reads nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import unquote_plus

RULE_SUFFIXES = (".csv", ".xlsx")
REPORT_SUFFIXES = (".report.csv", ".report.json")


def is_report_key(key: str) -> bool:
    return key.lower().endswith(REPORT_SUFFIXES)


def is_rule_key(key: str, prefix: str = "") -> bool:
    """A rule file under ``prefix``; a report written next to one also ends in ``.csv`` but is not."""
    return key.startswith(prefix) and key.lower().endswith(RULE_SUFFIXES) and not is_report_key(key)


class StoredRuleFile(Protocol):
    @property
    def key(self) -> str: ...

    @property
    def last_modified(self) -> datetime: ...


class RuleFiles(Protocol):
    @property
    def bucket(self) -> str: ...

    @property
    def prefix(self) -> str: ...

    def newest(self) -> StoredRuleFile | None: ...


@dataclass(frozen=True)
class Upload:
    bucket: str
    key: str
    at: datetime


@dataclass(frozen=True)
class Decision:
    """``key`` is the file to read, ``None`` when there is none yet; ``ignored`` lists notified keys
    that are not rule files here; ``superseded`` is the uploaded key a newer file replaced."""

    read: bool
    key: str | None = None
    ignored: tuple[Upload, ...] = ()
    superseded: str | None = None


def uploads(notification: Mapping[str, Any]) -> list[Upload]:
    """The objects an S3 event notification announces (keys arrive URL-encoded, spaces as ``+``)."""
    found: list[Upload] = []
    for record in notification.get("Records") or []:
        s3 = record.get("s3", {})
        when = datetime.fromisoformat(str(record.get("eventTime", "")).replace("Z", "+00:00"))
        key = unquote_plus(s3.get("object", {}).get("key", ""))
        found.append(Upload(s3.get("bucket", {}).get("name", ""), key, when))
    return found


def rule_file_to_read(event: Mapping[str, Any], files: RuleFiles) -> Decision:
    if not event.get("Records"):
        newest = files.newest()
        return Decision(True, newest.key if newest is not None else None)
    relevant: list[Upload] = []
    ignored: list[Upload] = []
    for upload in uploads(event):
        ours = upload.bucket == files.bucket and is_rule_key(upload.key, files.prefix)
        (relevant if ours else ignored).append(upload)
    if not relevant:
        return Decision(False, ignored=tuple(ignored))
    uploaded = max(relevant, key=lambda u: u.at)
    newest = files.newest()
    if newest is not None and newest.key != uploaded.key and newest.last_modified > uploaded.at:
        return Decision(True, newest.key, tuple(ignored), superseded=uploaded.key)
    return Decision(True, uploaded.key, tuple(ignored))
