"""Builds the configured action targets; the caller supplies the AWS clients."""

from __future__ import annotations

from pia.aws.clients import ClientFactory
from pia.core.actions import ActionTarget
from pia.settings import SettingsError, TargetSettings
from pia.targets.customer_profiles import CustomerProfilesTarget, UnfillableKey
from pia.targets.eventbridge import EventBridgeTarget
from pia.targets.pinpoint import PinpointTarget


def build_targets(settings: TargetSettings, client: ClientFactory) -> list[ActionTarget]:
    """One target per configured name, in the configured order (settings validated the names)."""
    targets: list[ActionTarget] = []
    for name in settings.action_targets:
        if name == "pinpoint":
            region = settings.pinpoint_region or None
            targets.append(PinpointTarget(client("pinpoint", region_name=region), settings.pinpoint_app_id))
        elif name == "eventbridge":
            targets.append(EventBridgeTarget(client("events"), settings.event_bus_name))
        else:
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
