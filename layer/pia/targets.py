"""Builds the configured action targets; the caller supplies the AWS clients."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pia.actions import ActionTarget
from pia.config import Settings
from pia.pinpoint import PinpointTarget

ClientFactory = Callable[..., Any]


class UnknownTarget(ValueError):
    pass


def build_targets(settings: Settings, client: ClientFactory) -> list[ActionTarget]:
    """``client(service_name, region_name=None)`` returns a boto3-compatible client."""
    targets: list[ActionTarget] = []
    for name in settings.action_targets:
        if name == "pinpoint":
            region = settings.pinpoint_region or None
            targets.append(PinpointTarget(client("pinpoint", region_name=region), settings.pinpoint_app_id))
        else:
            raise UnknownTarget(f"unknown action target {name!r}; known: pinpoint")
    return targets
