"""A realistic Amazon Pinpoint event stream, for the demo, replay samples and tests.

Users have one to three endpoints (phone, tablet, web), sessions spread over several days, and in
each session a few custom events with attributes and metrics, framed by Pinpoint's own
``_session.start``/``_session.stop``. Campaign ``_email.send`` events arrive for some users, and a
share of endpoints never signed in, so their events carry no ``endpoint.User.UserId``. Records are
in arrival order, as Pinpoint writes them to Kinesis; a few arrive late (an app that was offline),
so ``event_timestamp`` is not always increasing. The same seed always gives the same stream.
"""

from __future__ import annotations

import argparse
import json
import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

APP_ID = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"
ACCOUNT = "123456789012"
POOL = "us-east-1:4f1e1f1a-0000-4c3b-9a6e-3b2c1d0e9f8a"
DEVICES = (
    ("android", "14", "Google", "Pixel 8", "GCM"),
    ("android", "13", "samsung", "SM-S911B", "GCM"),
    ("ios", "17.4", "Apple", "iPhone15,2", "APNS"),
    ("ios", "17.2", "Apple", "iPad13,4", "APNS"),
    ("macos", "14.4", "generic web browser", "Unknown", "EMAIL"),
)
LOCALES = (("en_US", "US", "en"), ("en_GB", "GB", "en"), ("de_DE", "DE", "de"), ("fr_FR", "FR", "fr"))
SCREENS = ("home", "cart", "product", "search")
COURSES = ("intro-python", "sql-basics", "data-viz", "ml-101", "statistics")
CATEGORIES = ("books", "games", "music", "apps")
GENRES = ("comedy", "drama", "sports", "news")
WORLDS = ("forest", "desert", "ice", "lava")


@dataclass(frozen=True)
class StreamEvent:
    """One Pinpoint event-stream record and the partition key Pinpoint put it under."""

    document: dict[str, Any]
    partition_key: str

    @property
    def data(self) -> bytes:
        return json.dumps(self.document, separators=(",", ":")).encode()


@dataclass(frozen=True)
class _Endpoint:
    endpoint_id: str
    user_id: str | None
    platform: tuple[str, str, str, str, str]
    locale: tuple[str, str, str]
    cognito_id: str


@dataclass(frozen=True)
class _Profile:
    """How a user behaves: how often they come back, and what they do in a session."""

    endpoints: tuple[_Endpoint, ...]
    sessions_per_day: float
    interests: tuple[str, ...]
    spender: bool


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def generate(
    users: int = 300,
    days: int = 7,
    end: datetime | None = None,
    seed: int = 7,
    anonymous_share: float = 0.08,
) -> list[StreamEvent]:
    """The stream for ``users`` users over the ``days`` days before ``end``, in arrival order."""
    rng = random.Random(seed)
    finish = (end or datetime(2026, 4, 30, 12, tzinfo=UTC)).astimezone(UTC)
    start = finish - timedelta(days=days)
    profiles = [_profile(rng, index, anonymous_share) for index in range(1, users + 1)]
    pending: list[tuple[int, int, StreamEvent]] = []
    order = 0
    for profile in profiles:
        for document, partition_key in _user_stream(rng, profile, start, finish):
            order += 1
            pending.append((document["arrival_timestamp"], order, StreamEvent(document, partition_key)))
    for document, partition_key in _campaign(rng, profiles, start, finish):
        order += 1
        pending.append((document["arrival_timestamp"], order, StreamEvent(document, partition_key)))
    pending.sort(key=lambda item: (item[0], item[1]))
    return [event for arrival, _, event in pending if arrival <= _millis(finish)]


def _profile(rng: random.Random, index: int, anonymous_share: float) -> _Profile:
    user_id = None if rng.random() < anonymous_share else f"user-{index:04d}"
    count = rng.choices((1, 2, 3), weights=(6, 3, 1))[0]
    endpoints = tuple(
        _Endpoint(
            endpoint_id=_uuid(rng),
            user_id=user_id,
            platform=rng.choice(DEVICES),
            locale=rng.choice(LOCALES),
            cognito_id=f"us-east-1:{_uuid(rng)}",
        )
        for _ in range(count)
    )
    interests = tuple(
        rng.sample(("greenbutton", "course_completed", "purchase", "video_watched", "level_up"), 3)
    )
    return _Profile(
        endpoints=endpoints,
        sessions_per_day=rng.choice((0.3, 0.6, 1.0, 1.5, 2.5)),
        interests=interests,
        spender=rng.random() < 0.35,
    )


def _custom(rng: random.Random, event_type: str, profile: _Profile) -> tuple[dict[str, str], dict[str, Any]]:
    if event_type == "greenbutton":
        return {"screen": rng.choice(SCREENS)}, {"clicks": 1}
    if event_type == "course_completed":
        return (
            {"course": rng.choice(COURSES), "level": rng.choice(("beginner", "advanced"))},
            {"score": rng.randint(55, 100), "minutes": round(rng.uniform(12, 95), 1)},
        )
    if event_type == "purchase":
        high = 260.0 if profile.spender else 60.0
        return (
            {"category": rng.choice(CATEGORIES), "currency": "USD"},
            {"price": float(f"{rng.uniform(2.99, high):.2f}")},
        )
    if event_type == "video_watched":
        return {"genre": rng.choice(GENRES)}, {"seconds": rng.randint(30, 1800)}
    return {"world": rng.choice(WORLDS)}, {}


def _base(
    event_type: str, endpoint: _Endpoint, when: datetime, arrival: datetime, session: dict[str, Any]
) -> dict[str, Any]:
    platform, version, make, model, channel = endpoint.platform
    code, country, language = endpoint.locale
    document: dict[str, Any] = {
        "event_type": event_type,
        "event_timestamp": _millis(when),
        "arrival_timestamp": _millis(arrival),
        "event_version": "3.1",
        "application": {
            "app_id": APP_ID,
            "cognito_identity_pool_id": POOL,
            "sdk": {"name": "aws-amplify", "version": "6.3.2"},
            "package_name": "com.example.shop",
            "title": "Example Shop",
            "version_name": "2.4.0",
            "version_code": "240",
        },
        "client": {"client_id": endpoint.endpoint_id, "cognito_id": endpoint.cognito_id},
        "device": {
            "locale": {"code": code, "country": country, "language": language},
            "make": make,
            "model": model,
            "platform": {"name": platform, "version": version},
        },
        "session": session,
        "attributes": {},
        "metrics": {},
        "endpoint": {
            "ChannelType": channel,
            "EndpointStatus": "ACTIVE",
            "OptOut": "NONE",
            "EffectiveDate": (when - timedelta(days=30))
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "Demographic": {"Make": make, "Model": model, "Platform": platform, "Locale": code},
        },
        "awsAccountId": ACCOUNT,
    }
    if endpoint.user_id is not None:
        document["endpoint"]["User"] = {"UserId": endpoint.user_id}
    return document


def _user_stream(
    rng: random.Random, profile: _Profile, start: datetime, finish: datetime
) -> Iterable[tuple[dict[str, Any], str]]:
    span = (finish - start).total_seconds()
    sessions = max(1, round(rng.gauss(profile.sessions_per_day * span / 86_400, 1.0)))
    for _ in range(sessions):
        endpoint = rng.choice(profile.endpoints)
        begin = start + timedelta(seconds=rng.uniform(0, span - 3_600))
        delay = timedelta(hours=rng.uniform(1, 12)) if rng.random() < 0.03 else timedelta(0)
        session_id = _uuid(rng)
        session = {"session_id": session_id, "start_timestamp": _millis(begin)}
        now = begin
        yield (
            _base("_session.start", endpoint, now, _arrival(rng, now, delay), dict(session)),
            endpoint.endpoint_id,
        )
        for _ in range(rng.randint(1, 6)):
            now += timedelta(seconds=rng.uniform(5, 600))
            event_type = rng.choice(profile.interests)
            document = _base(event_type, endpoint, now, _arrival(rng, now, delay), dict(session))
            document["attributes"], document["metrics"] = _custom(rng, event_type, profile)
            yield document, endpoint.endpoint_id
        now += timedelta(seconds=rng.uniform(5, 120))
        stop = {**session, "stop_timestamp": _millis(now)}
        yield _base("_session.stop", endpoint, now, _arrival(rng, now, delay), stop), endpoint.endpoint_id


def _arrival(rng: random.Random, at: datetime, delay: timedelta) -> datetime:
    """When Pinpoint received it: a moment later, or hours later for an app that was offline."""
    return at + delay + timedelta(milliseconds=rng.randint(200, 1500))


def _campaign(
    rng: random.Random, profiles: Sequence[_Profile], start: datetime, finish: datetime
) -> Iterable[tuple[dict[str, Any], str]]:
    """A daily email campaign: ``_email.send`` events, which Pinpoint streams without a session."""
    campaign_id = _uuid(rng).replace("-", "")
    day = start.replace(hour=9, minute=0, second=0, microsecond=0) + timedelta(days=1)
    while day < finish:
        for profile in profiles:
            endpoint = profile.endpoints[0]
            if rng.random() > 0.15:
                continue
            when = day + timedelta(seconds=rng.uniform(0, 300))
            document = {
                "event_type": "_email.send",
                "event_timestamp": _millis(when),
                "arrival_timestamp": _millis(when + timedelta(milliseconds=rng.randint(300, 900))),
                "event_version": "3.1",
                "application": {"app_id": APP_ID, "sdk": {}},
                "client": {"client_id": endpoint.endpoint_id},
                "device": {"platform": {}},
                "session": {},
                "attributes": {
                    "campaign_send_status": "SUCCESS",
                    "campaign_id": campaign_id,
                    "campaign_activity_id": campaign_id[:16],
                    "treatment_id": "0",
                    "from_address": "news@example.com",
                },
                "client_context": {
                    "custom": {
                        "endpoint": json.dumps(
                            {"ChannelType": "EMAIL", "EndpointStatus": "ACTIVE"}
                            | ({"User": {"UserId": endpoint.user_id}} if endpoint.user_id else {})
                        )
                    }
                },
                "awsAccountId": ACCOUNT,
            }
            yield document, endpoint.endpoint_id
        day += timedelta(days=1)


def write_jsonl(path: Path, events: Iterable[StreamEvent]) -> int:
    """One event-stream JSON object per line, as ``pia replay --events`` reads them."""
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for event in events:
            out.write(json.dumps(event.document, separators=(",", ":")) + "\n")
            count += 1
    return count


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pia_cli.datagen", description=__doc__)
    parser.add_argument("output", type=Path, help="JSONL file to write")
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--end", default="2026-04-30T12:00:00Z", help="ISO 8601 time of the last event")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    end = datetime.fromisoformat(args.end.replace("Z", "+00:00"))
    count = write_jsonl(args.output, generate(args.users, args.days, end, args.seed))
    print(f"wrote {count} events to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
