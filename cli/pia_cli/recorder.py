"""A local stand-in for Amazon Pinpoint's endpoint and event APIs.

moto has no Pinpoint endpoints or events, and Pinpoint's engagement features are past end of
support, so local runs route Pinpoint calls here. The client is a real botocore client: every
request goes through botocore's own parameter validation against the Pinpoint model, then this
recorder answers it in-process instead of sending it. It keeps the resulting user attributes and
fired events so the demo, ``pia replay`` and tests can show what Pinpoint would hold.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

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


def success_response(parsed: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """A successful answer for a ``before-call`` hook, as botocore would have parsed it."""
    return _Response(200), {**parsed, "ResponseMetadata": {"HTTPStatusCode": 200}}


@dataclass
class _Response:
    status_code: int
    headers: dict[str, str] = field(default_factory=dict)
    text: str = ""
    content: bytes = b""


def model_violations(shape: Any, value: Any, path: str) -> list[str]:
    """What botocore's validator leaves to the service: maximum lengths, patterns and enums."""
    problems: list[str] = []
    meta = shape.metadata
    if shape.type_name == "structure":
        for name, member in value.items():
            problems += model_violations(shape.members[name], member, f"{path}.{name}")
    elif shape.type_name in ("list", "map"):
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"{path}: {len(value)} items is over {meta['max']}")
        if shape.type_name == "list":
            for i, item in enumerate(value):
                problems += model_violations(shape.member, item, f"{path}[{i}]")
        else:
            for key, item in value.items():
                problems += model_violations(shape.key, key, f"{path} key {key!r}")
                problems += model_violations(shape.value, item, f"{path}[{key!r}]")
    elif shape.type_name == "string":
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"{path}: {len(value)} characters is over {meta['max']}")
        if "pattern" in meta and not re.fullmatch(meta["pattern"], value):
            problems.append(f"{path}: {value!r} does not match {meta['pattern']}")
        if "enum" in meta and value not in meta["enum"]:
            problems.append(f"{path}: {value!r} is not one of {meta['enum']}")
    elif shape.type_name == "integer" and "max" in meta and value > meta["max"]:
        problems.append(f"{path}: {value} is over {meta['max']}")
    return problems


def refuse_model_violations(params: dict[str, Any], model: Any, **_: Any) -> None:
    """A ``before-parameter-build`` hook: the service's own 400 for what the model forbids."""
    problems = model_violations(model.input_shape, params, model.name)
    if problems:
        raise ClientError(
            {"Error": {"Code": "BadRequestException", "Message": "; ".join(problems)}}, model.name
        )


PROFILE_INDEXES = {
    "_account": ("AccountNumber",),
    "_email": ("EmailAddress", "PersonalEmailAddress", "BusinessEmailAddress"),
    "_phone": ("PhoneNumber", "MobilePhoneNumber", "HomePhoneNumber", "BusinessPhoneNumber"),
}
"""How Customer Profiles indexes the standard profile (``_profileId`` and ``_fullName`` too): the
only keys a profile has unless an object type or AddProfileKey gives it another."""


@dataclass
class StoredProfile:
    fields: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, str] = field(default_factory=dict)
    keys: dict[str, set[str]] = field(default_factory=dict)


@dataclass
class ProfilesRecorder:
    """A local stand-in for Amazon Connect Customer Profiles, which moto does not emulate.

    Like :class:`PinpointRecorder`, it is a real botocore client: each request passes botocore's
    validation against the customer-profiles model, and the model's lengths, patterns and enums,
    before this recorder answers it. It keeps one domain's profiles and finds them as the service
    does: only by a key that really indexes them (a standard field, or a key added to the profile),
    never by an ``Attributes`` entry.
    """

    region: str = "us-east-1"
    key_name: str = "_account"
    profiles: dict[str, StoredProfile] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self) -> Any:
        client = answering_client("customer-profiles", self.region, self._answer)
        client.meta.events.register("before-parameter-build.customer-profiles", refuse_model_violations)
        return client

    def key_values(self, profile_id: str, key_name: str) -> set[str]:
        profile = self.profiles[profile_id]
        if key_name == "_profileId":
            return {profile_id}
        if key_name == "_fullName":
            names = [profile.fields.get(n, "") for n in ("FirstName", "MiddleName", "LastName")]
            return {" ".join(n for n in names if n)} - {""}
        indexed = {profile.fields[f] for f in PROFILE_INDEXES.get(key_name, ()) if f in profile.fields}
        return indexed | profile.keys.get(key_name, set())

    def user_attributes(self) -> dict[str, dict[str, str]]:
        """user id (the search key's value) -> the profile's attributes."""
        found: dict[str, dict[str, str]] = {}
        for profile_id, profile in self.profiles.items():
            for value in self.key_values(profile_id, self.key_name):
                found[value] = dict(profile.attributes)
        return found

    def _answer(self, model: Any, params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
        operation = model.name
        body = json.loads(params["body"] or b"{}")
        with self._lock:
            self.calls[operation] += 1
            if operation == "SearchProfiles":
                wanted = set(body["Values"])
                items = [
                    {
                        "ProfileId": profile_id,
                        **profile.fields,
                        "Attributes": dict(profile.attributes),
                        "FoundByItems": [{"KeyName": body["KeyName"], "Values": sorted(matched)}],
                    }
                    for profile_id, profile in sorted(self.profiles.items())
                    if (matched := self.key_values(profile_id, body["KeyName"]) & wanted)
                ]
                return _ok(200, {"Items": items})
            if operation == "CreateProfile":
                profile_id = f"{len(self.profiles) + 1:032x}"
                standard = {k: v for k, v in body.items() if isinstance(v, str) and k != "DomainName"}
                self.profiles[profile_id] = StoredProfile(standard, dict(body.get("Attributes", {})))
                return _ok(200, {"ProfileId": profile_id})
            if operation == "AddProfileKey":
                profile_id = body["ProfileId"]
                if profile_id not in self.profiles:
                    return _error("ResourceNotFoundException", f"no profile {profile_id}")
                self.profiles[profile_id].keys.setdefault(body["KeyName"], set()).update(body["Values"])
                return _ok(200, {"KeyName": body["KeyName"], "Values": body["Values"]})
            if operation == "UpdateProfile":
                profile_id = body["ProfileId"]
                if profile_id not in self.profiles:
                    return _error("ResourceNotFoundException", f"no profile {profile_id}")
                self.profiles[profile_id].attributes.update(body.get("Attributes", {}))
                return _ok(200, {"ProfileId": profile_id})
            return _error("BadRequestException", f"{operation} is not recorded locally")
