"""Function settings, read once from the environment the template sets."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from pia.core.mapping import FieldMapping

DEFAULT_TARGETS = ("eventbridge",)
"""What a stack deployed today can reach in any account: EventBridge needs no resource beyond the
default bus. (Pinpoint's engagement APIs ended on 2026-10-30; ``pinpoint`` remains a choice.)"""
MAPPING_ENV = {
    "user_id": "MAPPING_USER_ID",
    "event_type": "MAPPING_EVENT_TYPE",
    "timestamp": "MAPPING_TIMESTAMP",
    "attributes": "MAPPING_ATTRIBUTES",
    "metrics": "MAPPING_METRICS",
    "event_id": "MAPPING_EVENT_ID",
}


def _targets(raw: str) -> tuple[str, ...]:
    names = tuple(n.strip().lower() for n in raw.split(",") if n.strip())
    return names or DEFAULT_TARGETS


@dataclass(frozen=True)
class Settings:
    aggregates_table: str = ""
    ruleset_table: str = ""
    pinpoint_app_id: str = ""
    pinpoint_region: str = ""
    action_targets: tuple[str, ...] = DEFAULT_TARGETS
    event_bus_name: str = "default"
    profiles_domain: str = ""
    profiles_key_name: str = "_account"
    profiles_create_missing: bool = False
    parallelization_factor: int = 1
    max_record_age_seconds: int = 86_400
    ruleset_ttl_seconds: int = 60
    outbox_min_age_seconds: int = 300
    raw_events_bucket: str = ""
    timezone: str = "UTC"
    timeseries_table: str = ""
    raw_event_retention_days: int = 400
    backfill_query_engine: str = "athena"
    athena_workgroup: str = ""
    glue_database: str = ""
    backfill_results_bucket: str = ""
    backfill_lambda_max_objects: int = 2_000
    field_mapping: FieldMapping | None = None

    @property
    def lane_retention_seconds(self) -> int:
        """How long a lane's dedupe mark must live: past the oldest record Lambda may still redeliver."""
        return self.max_record_age_seconds + 3_600

    @staticmethod
    def from_env(env: Mapping[str, str] | None = None) -> Settings:
        e = os.environ if env is None else env
        return Settings(
            aggregates_table=e.get("AGGREGATES_TABLE", ""),
            ruleset_table=e.get("RULESET_TABLE", ""),
            pinpoint_app_id=e.get("PINPOINT_APP_ID", ""),
            pinpoint_region=e.get("PINPOINT_REGION", ""),
            action_targets=_targets(e.get("ACTION_TARGETS", "")),
            event_bus_name=e.get("EVENT_BUS_NAME", "default") or "default",
            profiles_domain=e.get("PROFILES_DOMAIN", ""),
            profiles_key_name=e.get("PROFILES_KEY_NAME", "_account") or "_account",
            profiles_create_missing=e.get("PROFILES_CREATE_MISSING", "false").lower() == "true",
            parallelization_factor=int(e.get("PARALLELIZATION_FACTOR", "1") or 1),
            max_record_age_seconds=int(e.get("MAX_RECORD_AGE_SECONDS", "86400") or 86_400),
            ruleset_ttl_seconds=int(e.get("RULESET_TTL_SECONDS", "60") or 60),
            outbox_min_age_seconds=int(e.get("OUTBOX_MIN_AGE_SECONDS", "300") or 300),
            raw_events_bucket=e.get("RAW_EVENTS_BUCKET", ""),
            timezone=e.get("TIMEZONE", "UTC") or "UTC",
            timeseries_table=e.get("TIMESERIES_TABLE", ""),
            raw_event_retention_days=int(e.get("RAW_EVENT_RETENTION_DAYS", "400") or 400),
            backfill_query_engine=(e.get("BACKFILL_QUERY_ENGINE", "athena") or "athena").lower(),
            athena_workgroup=e.get("ATHENA_WORKGROUP", ""),
            glue_database=e.get("GLUE_DATABASE", ""),
            backfill_results_bucket=e.get("BACKFILL_RESULTS_BUCKET", ""),
            backfill_lambda_max_objects=int(e.get("BACKFILL_LAMBDA_MAX_OBJECTS", "2000") or 2_000),
            field_mapping=FieldMapping.declared({k: e.get(v, "") for k, v in MAPPING_ENV.items()}),
        )
