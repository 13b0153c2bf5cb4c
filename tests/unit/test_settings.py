"""Each function's settings: read once at cold start, with errors that name the variable."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

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
