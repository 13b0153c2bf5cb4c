"""The rule poller's logic: read the marketer's table, validate it, and publish it safely.

Safety rules, each from an incident in the original solution:
- a source that cannot be read (error, throttle, missing object, unreadable file, missing column)
  publishes nothing, deletes nothing, and fails the run, so the last good ruleset stays live and
  the schedule's alarm sees it;
- a rule missing from a table that *was* read is only marked removed; its counters are deleted
  after a grace period, so restoring the row within it brings the rule back with its counts;
- a row with an error never blocks the others, and a near miss against recently seen event names
  is a warning, never an error.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Protocol
from zoneinfo import ZoneInfo

from pia.rules.filters import exact_texts
from pia.rules.model import Rule, RuleType
from pia.rules.ruleset import (
    LEGACY_SERIES_PARTITIONS,
    PublishConflict,
    Ruleset,
    activation_for_new_series,
    content_hash,
)
from pia.rules.sheets import ValidationReport, build_report, table_failure_report
from pia.rules.source import RuleSource, SourceFailure
from pia.rules.table import ParseResult, RowIssue, RuleTable, Severity, TableError, parse_table

NEAR_MISS_DAYS = 30
MAX_MISSES_PER_ROW = 3
"""A Filter's list may hold 100 values; a few warnings say enough about one row."""
UTC_ZONE = ZoneInfo("UTC")


class RulesetStore(Protocol):
    def current(self) -> Ruleset: ...

    def publish(self, ruleset: Ruleset, expected_version: int) -> None: ...


class CounterCleaner(Protocol):
    def delete_rule_counters(self, rule_id: str) -> int: ...


class SeenValues(Protocol):
    """What the engine has recently seen (the time-series data, issue #4). An empty answer means
    "no history", never "nothing matches", so it produces no warnings."""

    def event_names(self, since: date) -> set[str]: ...

    def attribute_values(self, event_name: str, attribute_name: str, since: date) -> set[str]: ...


def _closest(name: str, seen: Iterable[str]) -> str | None:
    """Same text but for case and spacing first (the original's most common trap), then difflib."""
    candidates = sorted(seen)
    squashed = "".join(name.split()).lower()
    for candidate in candidates:
        if "".join(candidate.split()).lower() == squashed:
            return candidate
    matches = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return matches[0] if matches else None


def _miss(subject: str, days: int, suggestion: str | None) -> str:
    hint = (
        f"did you mean `{suggestion}`?"
        if suggestion
        else "values must match exactly, case and spaces included"
    )
    return f"{subject} seen in the last {days} days; {hint}"


def near_miss_warnings(
    rules: Iterable[Rule], seen: SeenValues | None, since: date, days: int = NEAR_MISS_DAYS
) -> list[RowIssue]:
    if seen is None:
        return []
    names = seen.event_names(since)
    if not names:
        return []
    warnings: list[RowIssue] = []
    values_cache: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        if rule.event_name not in names:
            message = _miss(f"no event named `{rule.event_name}`", days, _closest(rule.event_name, names))
            warnings.append(RowIssue(rule.row, "EventName", message, Severity.WARNING))
            continue
        checks: list[tuple[str, str, str]] = []
        if rule.attribute_name is not None and rule.attribute_value is not None:
            checks.append(("AttributeValue", rule.attribute_name, rule.attribute_value))
        if rule.filter is not None:
            checks += [("Filter", name, value) for name, value in exact_texts(rule.filter.expression)]
        misses = 0
        for column, attribute, value in checks:
            key = (rule.event_name, attribute)
            if key not in values_cache:
                values_cache[key] = seen.attribute_values(rule.event_name, attribute, since)
            values = values_cache[key]
            if values and value not in values and misses < MAX_MISSES_PER_ROW:
                misses += 1
                subject = f"no `{rule.event_name}` event with {attribute} = `{value}`"
                message = _miss(subject, days, _closest(value, values))
                warnings.append(RowIssue(rule.row, column, message, Severity.WARNING))
    return warnings


@dataclass(frozen=True)
class Plan:
    """The next ruleset computed from the current one and a table read successfully."""

    ruleset: Ruleset
    expired: tuple[str, ...]
    restored: tuple[str, ...]
    changed: bool


def plan_ruleset(
    current: Ruleset,
    live: tuple[Rule, ...],
    kept: Iterable[str],
    now: datetime,
    grace: timedelta,
    source: str,
    undeleted: Iterable[str] = (),
    partitions: int = LEGACY_SERIES_PARTITIONS,
) -> Plan:
    """``kept`` are rule ids that are not live but must keep their counters (paused rows).

    A rule leaves ``removed`` when it is live or kept again, or once its grace period is over and
    its counters are deleted. The caller deletes before publishing; ``undeleted`` names the rules
    whose deletion failed, which stay in ``removed`` so the next run tries again.
    """
    live_ids = {r.rule_id for r in live}
    retained = live_ids | set(kept)
    removed: dict[str, str] = {}
    restored: list[str] = []
    for rule_id, since in current.removed.items():
        if rule_id in retained:
            restored.append(rule_id)
        else:
            removed[rule_id] = since
    for rule in current.rules:
        if rule.rule_id not in retained and rule.rule_id not in removed:
            removed[rule.rule_id] = now.isoformat()
    overdue = {rule_id for rule_id, since in removed.items() if now - datetime.fromisoformat(since) >= grace}
    expired = tuple(sorted(overdue - set(undeleted)))
    for rule_id in expired:
        del removed[rule_id]

    series_in_use = {r.series for r in live if r.rule_type is RuleType.DATE}
    activation = {s: d for s, d in current.series_activation.items() if s in series_in_use}
    counts = {s: n for s, n in current.series_partitions.items() if s in activation}
    for series in sorted(series_in_use - set(activation)):
        activation[series] = activation_for_new_series(now)
        counts[series] = partitions

    changed = (
        content_hash(live) != current.content_hash
        or activation != dict(current.series_activation)
        or counts != dict(current.series_partitions)
        or removed != dict(current.removed)
    )
    ruleset = Ruleset(
        version=current.version + 1 if changed else current.version,
        rules=live,
        published_at=now.isoformat() if changed else current.published_at,
        source=source if changed else current.source,
        series_activation=activation,
        removed=removed,
        series_partitions=counts,
    )
    return Plan(ruleset, expired, tuple(sorted(restored)), changed)


class PollStatus(StrEnum):
    PUBLISHED = "published"
    UNCHANGED = "unchanged"
    NO_SOURCE = "no_source"


@dataclass(frozen=True)
class PollOutcome:
    status: PollStatus
    version: int
    report: ValidationReport | None = None
    result: ParseResult | None = None
    report_location: str | None = None
    pending_removal: Mapping[str, str] = field(default_factory=dict)
    deleted: Mapping[str, int] = field(default_factory=dict)
    restored: tuple[str, ...] = ()
    deletion_failures: Mapping[str, str] = field(default_factory=dict)

    @property
    def rules_live(self) -> int:
        return len(self.result.rules) if self.result else 0

    @property
    def error_rows(self) -> int:
        return len({i.row for i in self.result.errors}) if self.result else 0

    @property
    def warnings(self) -> int:
        return len(self.result.warnings) if self.result else 0

    def summary(self) -> dict[str, object]:
        return {
            "status": self.status.value,
            "version": self.version,
            "rules": self.rules_live,
            "errors": self.error_rows,
            "warnings": self.warnings,
            "report": self.report_location,
            "pending_removal": dict(self.pending_removal),
            "deleted_counters": dict(self.deleted),
            "restored": list(self.restored),
            "deletion_failures": dict(self.deletion_failures),
        }


class Poller:
    def __init__(
        self,
        rulesets: RulesetStore,
        counters: CounterCleaner,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        grace: timedelta = timedelta(hours=24),
        seen: SeenValues | None = None,
        zone: ZoneInfo = UTC_ZONE,
        rollup_partitions: int = LEGACY_SERIES_PARTITIONS,
    ) -> None:
        self._partitions = rollup_partitions
        self._rulesets = rulesets
        self._counters = counters
        self._clock = clock
        self._grace = grace
        self._seen = seen
        self._zone = zone

    def validate(self, table: RuleTable, now: datetime) -> ParseResult:
        """Row errors from the parser plus near-miss warnings; :class:`TableError` for the header."""
        result = parse_table(table)
        since = now.astimezone(self._zone).date() - timedelta(days=NEAR_MISS_DAYS)
        return result.with_warnings(near_miss_warnings(result.rules, self._seen, since))

    def run(self, source: RuleSource) -> PollOutcome:
        now = self._clock()
        try:
            table = source.read()
        except SourceFailure as exc:
            if exc.missing:
                current = self._rulesets.current()
                if current.version == 0:
                    return PollOutcome(PollStatus.NO_SOURCE, 0)
            raise
        try:
            result = self.validate(table, now)
        except TableError as exc:
            source.write_report(table_failure_report(source.description, str(exc)))
            raise SourceFailure(f"{source.description}: {exc}") from exc
        report = build_report(source.description, result)
        location = source.write_report(report)
        if result.errors and not result.rules and self._rulesets.current().rules:
            # A table whose every row is wrong is a broken file (a bad export, a find-and-replace
            # gone wrong), not a decision to stop every rule and delete its counts after the grace.
            raise SourceFailure(f"{source.description}: every rule row has an error; nothing was published")
        kept = {r.rule_id for r in result.paused}

        for attempt in (1, 2):
            current = self._rulesets.current()
            plan = plan_ruleset(
                current, result.rules, kept, now, self._grace, source.description, partitions=self._partitions
            )
            deleted, failures = self._delete(plan.expired)
            if failures:
                plan = plan_ruleset(
                    current,
                    result.rules,
                    kept,
                    now,
                    self._grace,
                    source.description,
                    failures,
                    partitions=self._partitions,
                )
            outcome = PollOutcome(
                PollStatus.PUBLISHED if plan.changed else PollStatus.UNCHANGED,
                plan.ruleset.version,
                report,
                result,
                location,
                dict(plan.ruleset.removed),
                deleted,
                plan.restored,
                failures,
            )
            if not plan.changed:
                return outcome
            try:
                self._rulesets.publish(plan.ruleset, expected_version=current.version)
            except PublishConflict:
                if attempt == 2:
                    raise
                continue
            return outcome
        raise AssertionError("unreachable")

    def _delete(self, rule_ids: Iterable[str]) -> tuple[dict[str, int], dict[str, str]]:
        """A failed deletion keeps the rule in ``removed`` for the next run; it never blocks publishing."""
        deleted: dict[str, int] = {}
        failures: dict[str, str] = {}
        for rule_id in rule_ids:
            try:
                deleted[rule_id] = self._counters.delete_rule_counters(rule_id)
            except Exception as exc:
                failures[rule_id] = f"{type(exc).__name__}: {exc}"
        return deleted, failures
