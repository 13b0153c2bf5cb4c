"""A local stand-in for Amazon Pinpoint's endpoint and event APIs.

moto has no Pinpoint endpoints or events, and Pinpoint's engagement features are past end of
support, so local runs route Pinpoint calls here. The client is a real botocore client: every
request goes through botocore's own parameter validation against the Pinpoint model, then this
recorder answers it in-process instead of sending it. It keeps the resulting user attributes and
fired events so the demo, ``pia replay`` and tests can show what Pinpoint would hold.
"""

from __future__ import annotations

import json
import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import boto3
from botocore.config import Config

Answer = Callable[..., tuple[Any, dict[str, Any]]]


def answering_client(service: str, region: str, answer: Answer) -> Any:
    """A real botocore client whose requests are validated and serialized as usual, then answered
    in-process by ``answer`` instead of being sent."""
    client: Any = boto3.client(  # type: ignore[call-overload]
        service,
        region_name=region,
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )
    client.meta.events.register(f"before-call.{service}.*", answer)
    return client


@dataclass
class RecordedEvent:
    endpoint_id: str
    event_id: str
    event_type: str
    user_id: str | None


@dataclass
class PinpointRecorder:
    """Validated Pinpoint calls, and the user attributes and events they leave behind."""

    region: str = "us-east-1"
    fail_next: int = 0
    failure_code: str = "TooManyRequestsException"
    failure_filter: Callable[[str], bool] | None = None
    user_attributes: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    endpoint_attributes: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    events: list[RecordedEvent] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self) -> Any:
        return answering_client("pinpoint", self.region, self._answer)

    def fired(self) -> Counter[tuple[str, str]]:
        """(user id, event type) -> how many times it fired."""
        with self._lock:
            return Counter((e.user_id or e.endpoint_id, e.event_type) for e in self.events)

    def _answer(self, model: Any, params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
        operation = model.name
        with self._lock:
            self.calls[operation] += 1
            if self.fail_next > 0 and (self.failure_filter is None or self.failure_filter(operation)):
                self.fail_next -= 1
                return _error(self.failure_code)
            body = json.loads(params["body"] or b"{}")
            if operation == "UpdateEndpointsBatch":
                for item in body["Item"]:
                    self._record_endpoint(item["Id"], item.get("User", {}))
                return _ok(202, {"MessageBody": {"Message": "Accepted", "RequestID": "local"}})
            if operation == "UpdateEndpoint":
                self._record_endpoint(unquote(params["url_path"].rsplit("/", 1)[-1]), body.get("User", {}))
                return _ok(202, {"MessageBody": {"Message": "Accepted", "RequestID": "local"}})
            if operation == "PutEvents":
                results: dict[str, Any] = {}
                for endpoint_id, batch in body["BatchItem"].items():
                    items: dict[str, Any] = {}
                    for event_id, event in batch["Events"].items():
                        user_id = (event.get("Attributes") or {}).get("user_id")
                        self.events.append(RecordedEvent(endpoint_id, event_id, event["EventType"], user_id))
                        items[event_id] = {"StatusCode": 202, "Message": "Accepted"}
                    results[endpoint_id] = {
                        "EndpointItemResponse": {"StatusCode": 202, "Message": "Accepted"},
                        "EventsItemResponse": items,
                    }
                return _ok(202, {"EventsResponse": {"Results": results}})
            return _error("BadRequestException", f"{operation} is not recorded locally")

    def _record_endpoint(self, endpoint_id: str, user: dict[str, Any]) -> None:
        for name, values in user.get("UserAttributes", {}).items():
            value = values[0] if values else ""
            self.endpoint_attributes[endpoint_id][name] = value
            if user.get("UserId"):
                self.user_attributes[user["UserId"]][name] = value


def _ok(status: int, parsed: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    return _Response(status), {**parsed, "ResponseMetadata": {"HTTPStatusCode": status}}


def _error(code: str, message: str = "injected") -> tuple[Any, dict[str, Any]]:
    return error_response(429 if code == "TooManyRequestsException" else 400, code, message)


def error_response(status: int, code: str, message: str, **extra: Any) -> tuple[Any, dict[str, Any]]:
    """An AWS error answer for a ``before-call`` hook: botocore raises it as the service would."""
    return _Response(status), {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
        **extra,
    }


@dataclass
class _Response:
    status_code: int
    headers: dict[str, str] = field(default_factory=dict)
    text: str = ""
    content: bytes = b""


@dataclass
class ProfilesRecorder:
    """A local stand-in for Amazon Connect Customer Profiles, which moto does not emulate.

    Like :class:`PinpointRecorder`, it is a real botocore client: each request passes botocore's
    validation against the customer-profiles model before this recorder answers it. It keeps one
    domain's profiles, found by the search key the target is configured with.
    """

    region: str = "us-east-1"
    key_name: str = "_userId"
    profiles: dict[str, dict[str, str]] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self) -> Any:
        return answering_client("customer-profiles", self.region, self._answer)

    def user_attributes(self) -> dict[str, dict[str, str]]:
        """user id (the search key's value) -> the profile's attributes other than the key."""
        return {
            attributes[self.key_name]: {k: v for k, v in attributes.items() if k != self.key_name}
            for attributes in self.profiles.values()
            if self.key_name in attributes
        }

    def _answer(self, model: Any, params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
        operation = model.name
        body = json.loads(params["body"] or b"{}")
        with self._lock:
            self.calls[operation] += 1
            if operation == "SearchProfiles":
                wanted = set(body["Values"])
                items = [
                    {"ProfileId": profile_id, "Attributes": dict(attributes)}
                    for profile_id, attributes in sorted(self.profiles.items())
                    if attributes.get(body["KeyName"]) in wanted
                ]
                return _ok(200, {"Items": items})
            if operation == "CreateProfile":
                profile_id = f"{len(self.profiles) + 1:032x}"
                self.profiles[profile_id] = dict(body.get("Attributes", {}))
                return _ok(200, {"ProfileId": profile_id})
            if operation == "UpdateProfile":
                profile_id = body["ProfileId"]
                if profile_id not in self.profiles:
                    return _error("ResourceNotFoundException", f"no profile {profile_id}")
                self.profiles[profile_id].update(body.get("Attributes", {}))
                return _ok(200, {"ProfileId": profile_id})
            return _error("BadRequestException", f"{operation} is not recorded locally")
