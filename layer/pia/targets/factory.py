"""Builds the configured action targets; the caller supplies the AWS clients.

Each target's module is imported when that target is configured, so a cold start loads only the
adapters the stack sends to."""

from __future__ import annotations

from pia.aws.clients import ClientFactory
from pia.core.actions import ActionTarget
from pia.settings import SettingsError, TargetSettings


def build_targets(settings: TargetSettings, client: ClientFactory) -> list[ActionTarget]:
    """One target per configured name, in the configured order (settings validated the names)."""
    targets: list[ActionTarget] = []
    for name in settings.action_targets:
        if name == "pinpoint":
            from pia.targets.pinpoint import PinpointTarget  # noqa: PLC0415

            region = settings.pinpoint_region or None
            targets.append(PinpointTarget(client("pinpoint", region_name=region), settings.pinpoint_app_id))
        elif name == "eventbridge":
            from pia.targets.eventbridge import EventBridgeTarget  # noqa: PLC0415

            targets.append(EventBridgeTarget(client("events"), settings.event_bus_name))
        else:
            from pia.targets.customer_profiles import CustomerProfilesTarget, UnfillableKey  # noqa: PLC0415

            try:
                profiles = CustomerProfilesTarget(
                    client("customer-profiles"),
                    settings.profiles_domain,
                    settings.profiles_key_name,
                    create_missing=settings.profiles_create_missing,
                )
            except UnfillableKey as exc:
                raise SettingsError(str(exc)) from None
            targets.append(profiles)
    return targets
