"""Checks that answer a request before it is sent, as AWS answers one it refuses before acting on it.

A check is a botocore ``before-call`` handler: it returns ``None`` to let the call through, or the
error answer AWS would give, which botocore raises as a ``ClientError``. Checks need the call's
parameters as the caller gave them (``before-call`` only sees the serialized request), so
:func:`check_first` keeps them in the request context.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

API_PARAMS = "pia_api_params"
CLIENT_REGION = "pia_client_region"


class RequestCheck(Protocol):
    def __call__(self, model: Any, params: Mapping[str, Any], **kwargs: Any) -> Any:
        """``None`` to let the request through, or the error answer AWS would give."""
        ...


def service_event_name(client: Any) -> str:
    return str(client.meta.service_model.service_id.hyphenize())


def check_first(client: Any, checks: Sequence[RequestCheck]) -> Any:
    """Register ``checks`` ahead of every other ``before-call`` handler of ``client``, in order. They
    find the call's parameters, as the caller gave them, in ``context[API_PARAMS]``."""
    name = service_event_name(client)
    region = client.meta.region_name

    def remember(params: Mapping[str, Any], context: dict[str, Any], **_: Any) -> None:
        context[API_PARAMS] = params
        context[CLIENT_REGION] = region

    client.meta.events.register_first(f"before-parameter-build.{name}", remember)
    for check in reversed(checks):
        client.meta.events.register_first(f"before-call.{name}.*", check)
    return client
