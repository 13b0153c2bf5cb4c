"""Which rule file a poller run reads (``pia.rules.trigger``), without S3."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pia.rules.trigger import Decision, rule_file_to_read

T0 = datetime(2026, 4, 30, 12, tzinfo=UTC)


@dataclass(frozen=True)
class Stored:
    key: str
    last_modified: datetime


@dataclass(frozen=True)
class Files:
    newest_file: Stored | None
    bucket: str = "rules-bucket"
    prefix: str = "rules/"

    def newest(self) -> Stored | None:
        return self.newest_file


def notification(*uploads: tuple[str, str, datetime]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventTime": at.isoformat().replace("+00:00", "Z"),
                "s3": {"bucket": {"name": bucket}, "object": {"key": key}},
            }
            for bucket, key, at in uploads
        ]
    }


def test_the_schedule_reads_the_newest_rule_file_or_finds_none() -> None:
    assert rule_file_to_read({}, Files(Stored("rules/b.csv", T0))) == Decision(True, "rules/b.csv")
    assert rule_file_to_read({}, Files(None)) == Decision(True, None)


def test_an_upload_reads_the_uploaded_file_its_key_decoded() -> None:
    files = Files(Stored("rules/my rules.csv", T0))
    decision = rule_file_to_read(notification(("rules-bucket", "rules/my+rules.csv", T0)), files)
    assert decision == Decision(True, "rules/my rules.csv")


def test_a_late_notification_never_brings_back_older_rules() -> None:
    files = Files(Stored("rules/new.xlsx", T0 + timedelta(minutes=5)))
    decision = rule_file_to_read(notification(("rules-bucket", "rules/old.csv", T0)), files)
    assert decision.key == "rules/new.xlsx" and decision.superseded == "rules/old.csv"


def test_reports_other_prefixes_and_other_buckets_are_ignored() -> None:
    event = notification(
        ("rules-bucket", "rules/a.report.csv", T0),
        ("rules-bucket", "elsewhere/a.csv", T0),
        ("other-bucket", "rules/a.csv", T0),
    )
    decision = rule_file_to_read(event, Files(Stored("rules/a.csv", T0)))
    assert not decision.read and [u.key for u in decision.ignored] == [
        "rules/a.report.csv",
        "elsewhere/a.csv",
        "rules/a.csv",
    ]
