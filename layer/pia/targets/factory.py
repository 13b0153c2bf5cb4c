"""Builds the configured action targets; the caller supplies the AWS clients."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pia.core.actions import ActionTarget
from pia.settings import Settings
from pia.targets.customer_profiles import CustomerProfilesTarget, UnfillableKey
from pia.targets.eventbridge import EventBridgeTarget
from pia.targets.pinpoint import PinpointTarget

ClientFactory = Callable[..., Any]
KNOWN_TARGETS = ("pinpoint", "eventbridge", "customer-profiles")


class UnknownTarget(ValueError):
    pass


class MissingSetting(ValueError):
    """A target was chosen without the setting it cannot work without; failing at cold start beats
    failing every action."""


def build_targets(settings: Settings, client: ClientFactory) -> list[ActionTarget]:
    """``client(service_name, region_name=None)`` returns a boto3-compatible client."""
    targets: list[ActionTarget] = []
    for name in settings.action_targets:
        if name == "pinpoint":
            region = settings.pinpoint_region or None
            targets.append(PinpointTarget(client("pinpoint", region_name=region), settings.pinpoint_app_id))
        elif name == "eventbridge":
            targets.append(EventBridgeTarget(client("events"), settings.event_bus_name))
        elif name == "customer-profiles":
            if not settings.profiles_domain:
                raise MissingSetting(
                    "action target 'customer-profiles' needs PROFILES_DOMAIN (ProfilesDomainName)"
                )
            try:
                profiles = CustomerProfilesTarget(
                    client("customer-profiles"),
                    settings.profiles_domain,
                    settings.profiles_key_name,
                    create_missing=settings.profiles_create_missing,
                )
            except UnfillableKey as exc:
                raise MissingSetting(str(exc)) from None
            targets.append(profiles)
        else:
            raise UnknownTarget(f"unknown action target {name!r}; known: {', '.join(KNOWN_TARGETS)}")
    return targets
