"""Each function's settings, read from the environment the template sets, validated once at cold start.

One class per function, composed of shared groups (the action targets, the time zone), so a
variable means one thing everywhere. A missing or malformed variable fails the cold start with a
:class:`SettingsError` naming it: a misconfigured stack fails its first invocation loudly instead
of every later call quietly.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pia.core.mapping import FieldMapping, MappingError
from pia.rules.ruleset import LEGACY_SERIES_PARTITIONS, MAX_SERIES_PARTITIONS

KNOWN_TARGETS = ("pinpoint", "eventbridge", "customer-profiles")
DEFAULT_TARGETS = ("eventbridge",)
"""What a stack deployed today can reach in any account: EventBridge needs no resource beyond the
default bus. (Pinpoint's engagement APIs ended on 2026-10-30; ``pinpoint`` remains a choice.)"""
RULE_SOURCES = ("spreadsheet", "honeycode")
MAPPING_ENV = {
    "user_id": "MAPPING_USER_ID",
    "event_type": "MAPPING_EVENT_TYPE",
    "timestamp": "MAPPING_TIMESTAMP",
    "attributes": "MAPPING_ATTRIBUTES",
    "metrics": "MAPPING_METRICS",
    "event_id": "MAPPING_EVENT_ID",
}
N = TypeVar("N", int, float)


class SettingsError(ValueError):
    """A variable is missing or malformed; the message names it and says what it is for."""


class _Environment:
    def __init__(self, env: Mapping[str, str] | None) -> None:
        self._env = os.environ if env is None else env

    def text(self, name: str, default: str = "") -> str:
        return self._env.get(name, "").strip() or default

    def verbatim(self, name: str, default: str) -> str:
        """A value where empty means empty (a prefix), not "use the default"."""
        return self._env.get(name, default)

    def required(self, name: str, purpose: str) -> str:
        value = self.text(name)
        if not value:
            raise SettingsError(f"{name} is required: {purpose}")
        return value

    def integer(self, name: str, default: int, minimum: int = 0, maximum: float = float("inf")) -> int:
        return self._bounded(name, default, minimum, int, "a whole number", maximum)

    def number(self, name: str, default: float, minimum: float = 0) -> float:
        return self._bounded(name, default, minimum, float, "a number")

    def _bounded(
        self,
        name: str,
        default: N,
        minimum: N,
        parse: Callable[[str], N],
        kind: str,
        maximum: float = float("inf"),
    ) -> N:
        raw = self.text(name)
        if not raw:
            return default
        try:
            value = parse(raw)
        except ValueError:
            raise SettingsError(f"{name} must be {kind}, not {raw!r}") from None
        if not minimum <= value < float("inf"):
            raise SettingsError(f"{name} must be {kind} of at least {minimum}, not {raw!r}")
        if value > maximum:
            raise SettingsError(f"{name} must be {kind} of at most {maximum:g}, not {raw!r}")
        return value

    def flag(self, name: str, default: bool = False) -> bool:
        raw = self.text(name).lower()
        if not raw:
            return default
        if raw not in ("true", "false"):
            raise SettingsError(f"{name} must be true or false, not {raw!r}")
        return raw == "true"

    def field_mapping(self) -> FieldMapping | None:
        try:
            return FieldMapping.declared({k: self.text(v) for k, v in MAPPING_ENV.items()})
        except MappingError as exc:
            names = ", ".join(MAPPING_ENV.values())
            raise SettingsError(f"field mapping ({names}): {exc}") from None

    def zone(self) -> ZoneInfo:
        name = self.text("TIMEZONE", "UTC")
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise SettingsError(
                f"TIMEZONE {name!r} is not an IANA time zone name (for example UTC or Europe/Paris)"
            ) from None


@dataclass(frozen=True)
class TargetSettings:
    """Where actions go: the functions that send them (aggregator, evaluator, relay) share these."""

    action_targets: tuple[str, ...] = DEFAULT_TARGETS
    pinpoint_app_id: str = ""
    pinpoint_region: str = ""
    event_bus_name: str = "default"
    profiles_domain: str = ""
    profiles_key_name: str = "_account"
    profiles_create_missing: bool = False

    def __post_init__(self) -> None:
        unknown = [n for n in self.action_targets if n not in KNOWN_TARGETS]
        if unknown:
            raise SettingsError(
                f"ACTION_TARGETS names unknown target {unknown[0]!r}; known: {', '.join(KNOWN_TARGETS)}"
            )
        if "pinpoint" in self.action_targets and not self.pinpoint_app_id:
            raise SettingsError("PINPOINT_APP_ID is required: action target 'pinpoint' sends to that project")
        if "customer-profiles" in self.action_targets and not self.profiles_domain:
            raise SettingsError(
                "PROFILES_DOMAIN is required: action target 'customer-profiles' needs its domain "
                "(ProfilesDomainName)"
            )

    @staticmethod
    def from_env(env: Mapping[str, str] | None = None) -> TargetSettings:
        e = _Environment(env)
        names = tuple(n.strip().lower() for n in e.text("ACTION_TARGETS").split(",") if n.strip())
        return TargetSettings(
            action_targets=names or DEFAULT_TARGETS,
            pinpoint_app_id=e.text("PINPOINT_APP_ID"),
            pinpoint_region=e.text("PINPOINT_REGION"),
            event_bus_name=e.text("EVENT_BUS_NAME", "default"),
            profiles_domain=e.text("PROFILES_DOMAIN"),
            profiles_key_name=e.text("PROFILES_KEY_NAME", "_account"),
            profiles_create_missing=e.flag("PROFILES_CREATE_MISSING"),
        )


@dataclass(frozen=True)
class AggregatorSettings:
    aggregates_table: str
    ruleset_table: str
    targets: TargetSettings = field(default_factory=TargetSettings)
    parallelization_factor: int = 1
    max_record_age_seconds: int = 86_400
    ruleset_ttl_seconds: int = 60
    raw_events_bucket: str = ""
    timeseries_table: str = ""
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    raw_event_retention_days: int = 400
    field_mapping: FieldMapping | None = None
    memory_mb: int = 512
    """The function's memory (Lambda sets ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``): it sizes the state cache."""

    @property
    def lane_retention_seconds(self) -> int:
        """How long a lane's dedupe mark must live: past the oldest record Lambda may still redeliver."""
        return self.max_record_age_seconds + 3_600

    @staticmethod
    def from_env(env: Mapping[str, str] | None = None) -> AggregatorSettings:
        e = _Environment(env)
        return AggregatorSettings(
            aggregates_table=e.required("AGGREGATES_TABLE", "the aggregator keeps counters and outbox there"),
            ruleset_table=e.required("RULESET_TABLE", "the aggregator reads the live rules there"),
            targets=TargetSettings.from_env(env),
            parallelization_factor=e.integer("PARALLELIZATION_FACTOR", 1, minimum=1),
            max_record_age_seconds=e.integer("MAX_RECORD_AGE_SECONDS", 86_400, minimum=-1),
            ruleset_ttl_seconds=e.integer("RULESET_TTL_SECONDS", 60),
            raw_events_bucket=e.text("RAW_EVENTS_BUCKET"),
            timeseries_table=e.text("TIMESERIES_TABLE"),
            zone=e.zone(),
            raw_event_retention_days=e.integer("RAW_EVENT_RETENTION_DAYS", 400, minimum=1),
            field_mapping=e.field_mapping(),
            memory_mb=e.integer("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", 512, minimum=128),
        )


@dataclass(frozen=True)
class RelaySettings:
    aggregates_table: str
    targets: TargetSettings = field(default_factory=TargetSettings)
    outbox_min_age_seconds: int = 300
    timeseries_table: str = ""
    """Rollups owe date rules' actions there; empty in a stack without the time-series table."""

    @staticmethod
    def from_env(env: Mapping[str, str] | None = None) -> RelaySettings:
        e = _Environment(env)
        return RelaySettings(
            aggregates_table=e.required("AGGREGATES_TABLE", "the relay reads the outbox there"),
            targets=TargetSettings.from_env(env),
            outbox_min_age_seconds=e.integer("OUTBOX_MIN_AGE_SECONDS", 300),
            timeseries_table=e.text("TIMESERIES_TABLE"),
        )


DEFAULT_UNIT_ROLLUPS = 2_000
"""Most rollups one evaluator unit reads: about 2 MB of items (a month of activity is about 1 KB a
user), a pandas frame of a few MB, and seconds of evaluation, so a unit's memory stays flat whatever
the series' size."""


@dataclass(frozen=True)
class EvaluatorSettings:
    ruleset_table: str
    timeseries_table: str
    aggregates_table: str
    targets: TargetSettings = field(default_factory=TargetSettings)
    raw_events_bucket: str = ""
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    raw_event_retention_days: int = 400
    backfill_query_engine: str = "athena"
    athena_workgroup: str = ""
    glue_database: str = ""
    backfill_results_bucket: str = ""
    backfill_lambda_max_objects: int = 2_000
    unit_rollups: int = DEFAULT_UNIT_ROLLUPS
    max_concurrency: int = 10

    @staticmethod
    def from_env(env: Mapping[str, str] | None = None) -> EvaluatorSettings:
        e = _Environment(env)
        return EvaluatorSettings(
            ruleset_table=e.required("RULESET_TABLE", "the evaluator reads the live rules there"),
            timeseries_table=e.required("TIMESERIES_TABLE", "the evaluator reads its rollups there"),
            aggregates_table=e.required("AGGREGATES_TABLE", "the evaluator's actions go through the outbox"),
            targets=TargetSettings.from_env(env),
            raw_events_bucket=e.text("RAW_EVENTS_BUCKET"),
            zone=e.zone(),
            raw_event_retention_days=e.integer("RAW_EVENT_RETENTION_DAYS", 400, minimum=1),
            backfill_query_engine=e.text("BACKFILL_QUERY_ENGINE", "athena").lower(),
            athena_workgroup=e.text("ATHENA_WORKGROUP"),
            glue_database=e.text("GLUE_DATABASE"),
            backfill_results_bucket=e.text("BACKFILL_RESULTS_BUCKET"),
            backfill_lambda_max_objects=e.integer("BACKFILL_LAMBDA_MAX_OBJECTS", 2_000),
            unit_rollups=e.integer(
                "EVALUATOR_UNIT_ROLLUPS", DEFAULT_UNIT_ROLLUPS, minimum=1, maximum=100_000
            ),
            max_concurrency=e.integer("EVALUATOR_MAX_CONCURRENCY", 10, minimum=1, maximum=1_000),
        )


@dataclass(frozen=True)
class PollerSettings:
    ruleset_table: str
    aggregates_table: str
    source: str = "spreadsheet"
    honeycode_workbook_id: str = ""
    honeycode_table_id: str = ""
    rules_bucket: str = ""
    rules_prefix: str = "rules/"
    timeseries_table: str = ""
    grace: timedelta = timedelta(hours=24)
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    rollup_partitions: int = LEGACY_SERIES_PARTITIONS

    @staticmethod
    def from_env(env: Mapping[str, str] | None = None) -> PollerSettings:
        e = _Environment(env)
        source = e.text("RULE_SOURCE", "spreadsheet").lower()
        if source not in RULE_SOURCES:
            raise SettingsError(f"RULE_SOURCE must be spreadsheet or honeycode, not {source!r}")
        honeycode = source == "honeycode"
        return PollerSettings(
            ruleset_table=e.required("RULESET_TABLE", "the poller publishes the ruleset there"),
            aggregates_table=e.required(
                "AGGREGATES_TABLE", "the poller deletes removed rules' counters there"
            ),
            source=source,
            honeycode_workbook_id=e.required(
                "HONEYCODE_WORKBOOK_ID", "RULE_SOURCE honeycode reads that workbook"
            )
            if honeycode
            else e.text("HONEYCODE_WORKBOOK_ID"),
            honeycode_table_id=e.required("HONEYCODE_TABLE_ID", "RULE_SOURCE honeycode reads that table")
            if honeycode
            else e.text("HONEYCODE_TABLE_ID"),
            rules_bucket=e.text("RULES_BUCKET")
            if honeycode
            else e.required("RULES_BUCKET", "the spreadsheet source reads rule files there"),
            rules_prefix=e.verbatim("RULES_PREFIX", "rules/"),
            timeseries_table=e.text("TIMESERIES_TABLE"),
            grace=timedelta(hours=e.number("REMOVED_RULE_GRACE_HOURS", 24)),
            zone=e.zone(),
            rollup_partitions=e.integer(
                "ROLLUP_PARTITIONS", LEGACY_SERIES_PARTITIONS, minimum=1, maximum=MAX_SERIES_PARTITIONS
            ),
        )
