"""Each function's settings: read once at cold start, with errors that name the variable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from pia.aws.wiring import Wiring
from pia.core.state import cache_capacity
from pia.settings import (
    AggregatorSettings,
    EvaluatorSettings,
    PollerSettings,
    RelaySettings,
    SettingsError,
    TargetSettings,
)

TABLES = {"AGGREGATES_TABLE": "agg", "RULESET_TABLE": "rules", "TIMESERIES_TABLE": "ts"}
PINPOINT = {"PINPOINT_APP_ID": "app"}


def test_the_poller_reads_its_source_grace_prefix_and_zone() -> None:
    settings = PollerSettings.from_env(
        {
            **TABLES,
            "RULE_SOURCE": "Honeycode",
            "HONEYCODE_WORKBOOK_ID": "wb",
            "HONEYCODE_TABLE_ID": "tb",
            "REMOVED_RULE_GRACE_HOURS": "1.5",
            "RULES_PREFIX": "",
            "TIMEZONE": "Europe/Paris",
        }
    )
    assert (settings.source, settings.grace, settings.rules_prefix) == ("honeycode", timedelta(hours=1.5), "")
    assert settings.zone == ZoneInfo("Europe/Paris")
    assert PollerSettings.from_env({**TABLES, "RULES_BUCKET": "b"}).grace == timedelta(hours=24)


@pytest.mark.parametrize(
    ("reader", "env", "message"),
    [
        (AggregatorSettings.from_env, {**PINPOINT, "RULESET_TABLE": "r"}, "AGGREGATES_TABLE is required"),
        (AggregatorSettings.from_env, {**PINPOINT, "AGGREGATES_TABLE": "a"}, "RULESET_TABLE is required"),
        (
            EvaluatorSettings.from_env,
            {**PINPOINT, "RULESET_TABLE": "r", "AGGREGATES_TABLE": "a"},
            "TIMESERIES_TABLE",
        ),
        (RelaySettings.from_env, PINPOINT, "AGGREGATES_TABLE is required"),
        (PollerSettings.from_env, TABLES, "RULES_BUCKET is required"),
        (
            PollerSettings.from_env,
            {**TABLES, "RULE_SOURCE": "honeycode"},
            "HONEYCODE_WORKBOOK_ID is required",
        ),
        (PollerSettings.from_env, {**TABLES, "RULE_SOURCE": "sheets"}, "RULE_SOURCE must be"),
        (
            PollerSettings.from_env,
            {**TABLES, "RULES_BUCKET": "b", "TIMEZONE": "Mars/Olympus"},
            "TIMEZONE 'Mars",
        ),
        (
            PollerSettings.from_env,
            {**TABLES, "RULES_BUCKET": "b", "REMOVED_RULE_GRACE_HOURS": "soon"},
            "REMOVED_RULE_GRACE_HOURS must be a number, not 'soon'",
        ),
        (
            AggregatorSettings.from_env,
            {**TABLES, **PINPOINT, "PARALLELIZATION_FACTOR": "ten"},
            "PARALLELIZATION_FACTOR",
        ),
        (AggregatorSettings.from_env, {**TABLES, **PINPOINT, "PARALLELIZATION_FACTOR": "0"}, "at least 1"),
        (
            PollerSettings.from_env,
            {**TABLES, "RULES_BUCKET": "b", "ROLLUP_PARTITIONS": "1001"},
            "ROLLUP_PARTITIONS must be a whole number of at most 1000",
        ),
        (PollerSettings.from_env, {**TABLES, "RULES_BUCKET": "b", "ROLLUP_PARTITIONS": "0"}, "at least 1"),
        (
            EvaluatorSettings.from_env,
            {**TABLES, "EVALUATOR_UNIT_ROLLUPS": "many"},
            "EVALUATOR_UNIT_ROLLUPS must be a whole number",
        ),
        (AggregatorSettings.from_env, {**TABLES, **PINPOINT, "TIMEZONE": "Nowhere"}, "TIMEZONE 'Nowhere'"),
        (
            AggregatorSettings.from_env,
            {**TABLES, **PINPOINT, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "64"},
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE must be a whole number of at least 128",
        ),
        (RelaySettings.from_env, {**TABLES, "ACTION_TARGETS": "pinpoint"}, "PINPOINT_APP_ID is required"),
        (RelaySettings.from_env, {**TABLES, "ACTION_TARGETS": "pigeon"}, "unknown target 'pigeon'"),
        (
            RelaySettings.from_env,
            {**TABLES, "ACTION_TARGETS": "customer-profiles"},
            "PROFILES_DOMAIN is required",
        ),
        (
            RelaySettings.from_env,
            {**TABLES, "ACTION_TARGETS": "eventbridge", "PROFILES_CREATE_MISSING": "yes"},
            "PROFILES_CREATE_MISSING must be true or false",
        ),
    ],
)
def test_a_missing_or_bad_variable_fails_the_cold_start_naming_it(
    reader: object, env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        reader(env)  # type: ignore[operator]


def test_targets_are_shared_by_every_function_that_sends() -> None:
    env = {**TABLES, "ACTION_TARGETS": " EventBridge , customer-profiles", "PROFILES_DOMAIN": "d"}
    expected = TargetSettings(("eventbridge", "customer-profiles"), profiles_domain="d")

    assert AggregatorSettings.from_env(env).targets == expected
    assert EvaluatorSettings.from_env(env).targets == expected
    assert RelaySettings.from_env(env).targets == expected


def test_one_commit_settings_per_container_from_its_wiring_and_settings() -> None:
    """The aggregator's writers share the wiring's clock, the lane retention its settings derive and
    one cache sized from the memory Lambda reports; the evaluator and the relay get no cache."""
    moment = datetime(2026, 11, 30, 8, tzinfo=UTC)
    wiring = Wiring(lambda service, region_name=None: None, lambda: moment)
    settings = AggregatorSettings.from_env(
        {**TABLES, **PINPOINT, "MAX_RECORD_AGE_SECONDS": "7200", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "2048"}
    )

    commit = wiring.commit(settings.lane_retention_seconds, memory_mb=settings.memory_mb)

    assert commit.clock() == moment
    assert commit.lane_retention_seconds == 7200 + 3600
    assert commit.cache is not None and commit.cache.capacity == cache_capacity(2048) > cache_capacity(512)
    assert wiring.commit().cache is None
