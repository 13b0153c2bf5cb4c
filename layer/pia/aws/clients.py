"""Where a function's AWS clients come from: one factory type that Lambda, local runs and tests share.

In Lambda the factory is :class:`AwsClients` (boto3 with the house SDK settings). Local runs and
tests hand the same handlers another factory of the same type (stand-ins for services the emulator
lacks, call counting, IAM and service-limit checks), so nothing is patched into a handler module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import boto3
from botocore.config import Config

SDK_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=3, read_timeout=10)
"""Standard retries, and timeouts well inside the functions' own: a stuck call is retried, not waited out."""


class ClientFactory(Protocol):
    def __call__(self, service: str, region_name: str | None = None) -> Any:
        """A boto3-compatible client for ``service`` (in ``region_name``, else the function's region)."""
        ...


ShippedModel = Callable[[Config], Any]
"""Makes a client for a service whose botocore model ships with the layer (Honeycode)."""


@dataclass(frozen=True)
class AwsClients:
    """Lambda's clients, from boto3's default session (so anything watching that session sees them)."""

    config: Config = SDK_CONFIG
    shipped: Mapping[str, ShippedModel] = field(default_factory=dict)

    def __call__(self, service: str, region_name: str | None = None) -> Any:
        if service in self.shipped:
            return self.shipped[service](self.config)
        return boto3.client(service, region_name=region_name, config=self.config)  # type: ignore[call-overload]
