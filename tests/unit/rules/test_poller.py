"""The poller's rules: publish on change only, keep the last good ruleset on failure, delete removed
rules' counters only after the grace period, and warn (never block) on near misses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import pytest

from pia.rules.poller import (
    Poller,
    PollStatus,
    near_miss_warnings,
)
from pia.rules.ruleset import EMPTY_RULESET, PublishConflict, Ruleset
from pia.rules.sheets import RowStatus, ValidationReport
from pia.rules.source import SourceFailure
from pia.rules.table import RuleTable, Severity, parse_rules
from tests.conftest import CASE_COURSE as COURSE
from tests.conftest import CASE_GREENBUTTON as GREEN
from tests.conftest import CASE_PURCHASE as PURCHASE
from tests.conftest import RULE_HEADER, rule_row

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
GREEN_DATE = ("date", *GREEN[1:4], *PURCHASE[4:])
GREEN_DATE_SERIES = "greenbutton#*"


def rule_id(cells: tuple[str, ...]) -> str:
    return parse_rules([(2, rule_row(*cells))]).rules[0].rule_id


@dataclass
class FakeRulesets:
    versions: list[Ruleset] = field(default_factory=list)
    conflicts: int = 0
    on_conflict: Callable[[FakeRulesets], None] | None = None

    def current(self) -> Ruleset:
        return self.versions[-1] if self.versions else EMPTY_RULESET

    def publish(self, ruleset: Ruleset, expected_version: int) -> None:
        if self.conflicts:
            self.conflicts -= 1
            if self.on_conflict is not None:
                self.on_conflict(self)
            raise PublishConflict("concurrent")
        assert expected_version == self.current().version
        assert ruleset.version == expected_version + 1
        self.versions.append(ruleset)


@dataclass
class FakeCounters:
    counts: dict[str, int] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    failing: set[str] = field(default_factory=set)

    def delete_rule_counters(self, rule_id: str) -> int:
        if rule_id in self.failing:
            raise RuntimeError("throttled")
        self.deleted.append(rule_id)
        return self.counts.pop(rule_id, 0)


@dataclass
class FakeSource:
    rows: list[tuple[str, ...]]
    extra: dict[int, dict[str, str]] = field(default_factory=dict)
    headers: tuple[str, ...] = RULE_HEADER
    failure: SourceFailure | None = None
    reports: list[ValidationReport] = field(default_factory=list)

    @property
    def description(self) -> str:
        return "s3://rules/rules.csv"

    def read(self) -> RuleTable:
        if self.failure is not None:
            raise self.failure
        rows = tuple(
            (n, {**rule_row(*cells), **self.extra.get(n, {})}) for n, cells in enumerate(self.rows, start=2)
        )
        return RuleTable(self.description, self.headers, rows)

    def write_report(self, report: ValidationReport) -> str | None:
        self.reports.append(report)
        return "s3://rules/rules.report.csv"


@dataclass
class InMemorySeenValues:
    """``events`` maps event name -> attribute name -> values seen (dates are not modelled)."""

    events: dict[str, dict[str, set[str]]] = field(default_factory=dict)

    def event_names(self, since: date) -> set[str]:
        return set(self.events)

    def attribute_values(self, event_name: str, attribute_name: str, since: date) -> set[str]:
        return set(self.events.get(event_name, {}).get(attribute_name, set()))


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def rulesets() -> FakeRulesets:
    return FakeRulesets()


@pytest.fixture
def counters() -> FakeCounters:
    return FakeCounters()


@pytest.fixture
def poller(rulesets: FakeRulesets, counters: FakeCounters, clock: Clock) -> Poller:
    return Poller(rulesets, counters, clock=clock, grace=timedelta(hours=24))


def test_first_run_publishes_version_1_and_an_unchanged_table_publishes_nothing(
    poller: Poller, rulesets: FakeRulesets, clock: Clock
) -> None:
    source = FakeSource([GREEN, COURSE])
    first = poller.run(source)
    assert (first.status, first.version) == (PollStatus.PUBLISHED, 1)
    assert [r.output_name for r in rulesets.current().rules] == ["trk_greenbutton", "trk_course_completed"]
    assert rulesets.current().source == "s3://rules/rules.csv"
    assert rulesets.current().published_at == T0.isoformat()

    clock.now += timedelta(minutes=5)
    second = poller.run(source)
    assert (second.status, second.version) == (PollStatus.UNCHANGED, 1)
    assert len(rulesets.versions) == 1


def test_bad_rows_are_reported_and_the_right_rows_still_go_live(
    poller: Poller, rulesets: FakeRulesets
) -> None:
    bad = (*GREEN[:6], "bigger", *GREEN[7:])
    source = FakeSource([GREEN, bad, COURSE])
    outcome = poller.run(source)
    assert [r.output_name for r in rulesets.current().rules] == ["trk_greenbutton", "trk_course_completed"]
    (report,) = source.reports
    assert [(line.row, line.status) for line in report.lines] == [
        (2, RowStatus.OK),
        (3, RowStatus.ERROR),
        (4, RowStatus.OK),
    ]
    assert outcome.summary()["errors"] == 1 and outcome.summary()["report"] == "s3://rules/rules.report.csv"


def test_a_source_failure_keeps_the_last_good_ruleset_and_deletes_nothing(
    poller: Poller, rulesets: FakeRulesets, counters: FakeCounters, clock: Clock
) -> None:
    poller.run(FakeSource([GREEN, COURSE]))
    poller.run(FakeSource([GREEN]))
    counters.counts[rule_id(COURSE)] = 40
    clock.now += timedelta(days=3)
    before = list(rulesets.versions)

    with pytest.raises(SourceFailure, match="throttled"):
        poller.run(FakeSource([], failure=SourceFailure("ThrottlingException: throttled")))
    assert rulesets.versions == before
    assert counters.deleted == [] and counters.counts == {rule_id(COURSE): 40}


def test_a_missing_required_column_fails_the_table_not_every_rule(
    poller: Poller, rulesets: FakeRulesets, counters: FakeCounters, clock: Clock
) -> None:
    poller.run(FakeSource([GREEN]))
    headers = tuple(h for h in RULE_HEADER if h != "Operator-C")
    renamed = FakeSource([GREEN], headers=headers)
    clock.now += timedelta(days=2)
    with pytest.raises(SourceFailure, match="Operator-C"):
        poller.run(renamed)
    assert len(rulesets.versions) == 1 and counters.deleted == []
    (report,) = renamed.reports
    assert report.lines[0].status is RowStatus.ERROR and "Operator-C" in report.lines[0].message


def test_no_rule_file_yet_is_quiet_until_a_ruleset_exists(poller: Poller, rulesets: FakeRulesets) -> None:
    missing = FakeSource([], failure=SourceFailure("no rule file", missing=True))
    assert poller.run(missing).status is PollStatus.NO_SOURCE
    poller.run(FakeSource([GREEN]))
    with pytest.raises(SourceFailure):
        poller.run(missing)
    assert len(rulesets.versions) == 1


def test_a_removed_rule_keeps_its_counters_for_the_grace_period_then_loses_them(
    poller: Poller, rulesets: FakeRulesets, counters: FakeCounters, clock: Clock
) -> None:
    poller.run(FakeSource([GREEN, COURSE]))
    course = rule_id(COURSE)
    counters.counts[course] = 7

    removed_at = clock.now = T0 + timedelta(hours=1)
    outcome = poller.run(FakeSource([GREEN]))
    assert outcome.status is PollStatus.PUBLISHED
    assert rulesets.current().removed == {course: removed_at.isoformat()}
    assert [r.output_name for r in rulesets.current().rules] == ["trk_greenbutton"]

    clock.now = removed_at + timedelta(hours=23, minutes=59)
    assert poller.run(FakeSource([GREEN])).status is PollStatus.UNCHANGED
    assert counters.deleted == []

    clock.now = removed_at + timedelta(hours=24)
    outcome = poller.run(FakeSource([GREEN]))
    assert outcome.deleted == {course: 7} and counters.deleted == [course]
    assert rulesets.current().removed == {} and rulesets.current().version == 3


def test_a_rule_restored_within_the_grace_period_keeps_its_counts(
    poller: Poller, rulesets: FakeRulesets, counters: FakeCounters, clock: Clock
) -> None:
    poller.run(FakeSource([GREEN, COURSE]))
    course = rule_id(COURSE)
    counters.counts[course] = 7
    clock.now += timedelta(hours=1)
    poller.run(FakeSource([GREEN]))
    clock.now += timedelta(hours=20)
    outcome = poller.run(FakeSource([COURSE, GREEN]))
    assert outcome.restored == (course,)
    assert rulesets.current().removed == {}
    clock.now += timedelta(days=5)
    poller.run(FakeSource([COURSE, GREEN]))
    assert counters.deleted == [] and counters.counts[course] == 7


def test_a_disabled_row_pauses_its_rule_without_deleting_counts(
    poller: Poller, rulesets: FakeRulesets, counters: FakeCounters, clock: Clock
) -> None:
    poller.run(FakeSource([GREEN, COURSE]))
    clock.now += timedelta(hours=1)
    paused = FakeSource([GREEN, COURSE], extra={3: {"Enabled": "no"}})
    poller.run(paused)
    assert [r.output_name for r in rulesets.current().rules] == ["trk_greenbutton"]
    assert rulesets.current().removed == {}
    clock.now += timedelta(days=3)
    poller.run(paused)
    assert counters.deleted == []


def test_a_failed_deletion_keeps_the_rule_marked_and_is_retried(
    poller: Poller, rulesets: FakeRulesets, counters: FakeCounters, clock: Clock
) -> None:
    poller.run(FakeSource([GREEN, COURSE]))
    course = rule_id(COURSE)
    clock.now += timedelta(hours=1)
    poller.run(FakeSource([GREEN]))
    counters.failing.add(course)
    clock.now += timedelta(hours=25)
    outcome = poller.run(FakeSource([GREEN]))
    assert course in outcome.deletion_failures and course in rulesets.current().removed
    counters.failing.clear()
    clock.now += timedelta(minutes=5)
    outcome = poller.run(FakeSource([GREEN]))
    assert counters.deleted == [course] and rulesets.current().removed == {}


def test_a_concurrent_publisher_is_absorbed_by_one_reread_and_retry(
    poller: Poller, rulesets: FakeRulesets, clock: Clock
) -> None:
    poller.run(FakeSource([GREEN]))

    def other_publisher_wins(store: FakeRulesets) -> None:
        store.versions.append(Ruleset(version=2, rules=store.current().rules, published_at="other"))

    rulesets.conflicts = 1
    rulesets.on_conflict = other_publisher_wins
    clock.now += timedelta(minutes=1)
    outcome = poller.run(FakeSource([GREEN, COURSE]))
    assert (outcome.status, outcome.version) == (PollStatus.PUBLISHED, 3)
    assert [r.output_name for r in rulesets.current().rules] == ["trk_greenbutton", "trk_course_completed"]


def test_a_second_conflict_in_a_row_fails_the_run(poller: Poller, rulesets: FakeRulesets) -> None:
    rulesets.conflicts = 2
    with pytest.raises(PublishConflict):
        poller.run(FakeSource([GREEN]))
    assert rulesets.versions == []


def test_new_date_series_get_an_activation_day_that_survives_later_versions(
    poller: Poller, rulesets: FakeRulesets, clock: Clock
) -> None:
    poller.run(FakeSource([PURCHASE]))
    assert dict(rulesets.current().series_activation) == {"purchase#*": "2026-01-06"}
    clock.now += timedelta(days=2)
    poller.run(FakeSource([PURCHASE, GREEN]))
    assert dict(rulesets.current().series_activation) == {"purchase#*": "2026-01-06"}
    poller.run(FakeSource([GREEN]))
    assert dict(rulesets.current().series_activation) == {}


def test_a_new_series_gets_the_configured_partition_count_and_an_existing_one_keeps_its_own(
    rulesets: FakeRulesets, counters: FakeCounters, clock: Clock
) -> None:
    legacy = Ruleset(version=1, rules=(), series_activation={"purchase#*": "2025-12-01"})
    rulesets.versions.append(legacy)
    Poller(rulesets, counters, clock=clock, rollup_partitions=64).run(FakeSource([PURCHASE]))
    assert dict(rulesets.current().series_partitions) == {}
    poller = Poller(rulesets, counters, clock=clock, rollup_partitions=64)
    poller.run(FakeSource([PURCHASE, GREEN_DATE]))
    assert dict(rulesets.current().series_partitions) == {GREEN_DATE_SERIES: 64}
    Poller(rulesets, counters, clock=clock, rollup_partitions=8).run(FakeSource([PURCHASE, GREEN_DATE]))
    assert dict(rulesets.current().series_partitions) == {GREEN_DATE_SERIES: 64}
    assert Ruleset.from_json(rulesets.current().to_json()).series_partitions == {GREEN_DATE_SERIES: 64}


def test_near_miss_suggests_the_seen_name_and_never_blocks_the_rule(
    rulesets: FakeRulesets, counters: FakeCounters, clock: Clock
) -> None:
    seen = InMemorySeenValues({"greenbutton": {"color": {"green", "blue"}}, "course_completed": {}})
    poller = Poller(rulesets, counters, clock=clock, seen=seen)
    green_button = (GREEN[0], "GreenButton", *GREEN[2:])
    filtered = (GREEN[0], "greenbutton", "color", "Green", *GREEN[4:])
    source = FakeSource([COURSE, COURSE, green_button, filtered], extra={3: {"Enabled": "no"}})
    outcome = poller.run(source)
    assert outcome.result is not None
    warnings = {(w.row, w.column): w.message for w in outcome.result.warnings}
    assert warnings == {
        (
            4,
            "EventName",
        ): "no event named `GreenButton` seen in the last 30 days; did you mean `greenbutton`?",
        (5, "AttributeValue"): "no `greenbutton` event with color = `Green` seen in the last 30 days; "
        "did you mean `green`?",
    }
    assert len(rulesets.current().rules) == 3
    lines = {line.row: line for line in source.reports[0].lines}
    assert lines[4].status is RowStatus.WARNING and "did you mean `greenbutton`" in lines[4].message


def test_near_miss_checks_the_exact_text_a_filter_compares_and_says_a_few_of_them() -> None:
    seen = InMemorySeenValues({"greenbutton": {"color": {"green", "blue"}, "plan": {"gold"}}})
    cells = {"OutputName": "trk_x"}
    rows = [
        (2, rule_row(*GREEN, Filter='color in ("green", "Blue") and not plan = "Gold"', **cells)),
        (3, rule_row(*GREEN, Filter='color contains "Gre" and plan != "gold"', OutputName="trk_y")),
        (4, rule_row(*GREEN, Filter='color in ("a", "b", "c", "d", "e")', OutputName="trk_z")),
    ]
    warnings = near_miss_warnings(parse_rules(rows).rules, seen, date(2026, 1, 1))
    assert [(w.row, w.column, w.message) for w in warnings[:2]] == [
        (
            2,
            "Filter",
            "no `greenbutton` event with color = `Blue` seen in the last 30 days; did you mean `blue`?",
        ),
        (
            2,
            "Filter",
            "no `greenbutton` event with plan = `Gold` seen in the last 30 days; did you mean `gold`?",
        ),
    ]
    assert [w.row for w in warnings[2:]] == [4, 4, 4]


def test_no_history_means_no_warnings() -> None:
    rules = parse_rules([(2, rule_row(*GREEN))]).rules
    assert near_miss_warnings(rules, None, date(2026, 1, 1)) == []
    assert near_miss_warnings(rules, InMemorySeenValues(), date(2026, 1, 1)) == []
    far = InMemorySeenValues({"checkout": {}})
    (warning,) = near_miss_warnings(rules, far, date(2026, 1, 1))
    assert warning.severity is Severity.WARNING
    assert warning.message.endswith("values must match exactly, case and spaces included")
