"""Amazon Connect Customer Profiles as an action target: the successor AWS names for Pinpoint's
user attributes and segments.

The engine knows users by their app user id; Customer Profiles knows profiles by ``ProfileId``. The
bridge is a search key of the domain (``ProfilesKeyName``) whose value is the user id: SearchProfiles
on it, then UpdateProfile with ``Attributes`` ``{output_name: value}``, which a marketer's segment
definition filters on.

Only keys the domain indexes can find a profile. The standard profile is indexed by ``_account``
(``AccountNumber``), ``_email`` and ``_phone`` (its email and phone fields), ``_profileId`` and
``_fullName``; other keys come from object types (an integration's ``_segmentUserId``, or the
domain's own). ``Attributes`` index nothing. So the default key is ``_account``, which CreateProfile
fills from ``AccountNumber``, and creating a missing profile is refused for a key CreateProfile
cannot fill: every action would otherwise create another profile the next search cannot find.
(``docs/moving-off-pinpoint.md`` cites the AWS pages.)

The API has no batch form, so the saving available is per user: all of one user's actions in a send
become a single search and a single update of each matching profile. When a send holds two values
for one attribute (the relay can bring an old one back), the later crossing wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from pia.core.actions import Action, ActionKind, SendResult

if TYPE_CHECKING:
    from mypy_boto3_customer_profiles import CustomerProfilesClient

MAX_KEY_VALUE = 255
MAX_PROFILES_PER_USER = 10
SEARCH_PAGE_SIZE = 100
DEFAULT_KEY = "_account"
STANDARD_KEY_FIELDS = {"_account": "AccountNumber", "_email": "EmailAddress", "_phone": "PhoneNumber"}
"""The predefined keys CreateProfile fills, each from the standard field that indexes it."""


class ProfileLookupError(Exception):
    pass


class UnfillableKey(ValueError):
    """ProfilesCreateMissing with a key CreateProfile cannot fill: a configuration error, reported at
    cold start rather than as one duplicate profile per action."""


def attribute_value(action: Action) -> str:
    """``ready``/``not-ready`` for rules; for a reset event, the UTC time it fired, which a segment
    can compare (``AFTER``/``BETWEEN``) since profiles hold state, not events."""
    if action.kind is ActionKind.FIRE_EVENT:
        return action.occurred_at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return action.value or ""


class CustomerProfilesTarget:
    name = "customer-profiles"

    def __init__(
        self,
        client: CustomerProfilesClient,
        domain_name: str,
        key_name: str = DEFAULT_KEY,
        *,
        create_missing: bool = False,
    ) -> None:
        if create_missing and key_name not in STANDARD_KEY_FIELDS:
            raise UnfillableKey(
                f"ProfilesCreateMissing=true needs a ProfilesKeyName that CreateProfile fills "
                f"({', '.join(STANDARD_KEY_FIELDS)}), not {key_name!r}: a profile created without it "
                "could never be found again, so every action would create another"
            )
        self._client = client
        self._domain = domain_name
        self._key = key_name
        self._create_missing = create_missing

    def send(self, actions: Sequence[Action]) -> SendResult:
        by_user: dict[str, list[Action]] = {}
        for action in actions:
            by_user.setdefault(action.user_id, []).append(action)
        failed: dict[str, str] = {}
        for user_id, user_actions in by_user.items():
            error = self._apply(user_id, user_actions)
            if error is not None:
                for action in user_actions:
                    failed[action.action_id] = error
        return SendResult(failed)

    def _apply(self, user_id: str, actions: Sequence[Action]) -> str | None:
        if len(user_id) > MAX_KEY_VALUE:
            return f"user id of {len(user_id)} characters is over the profile key limit of {MAX_KEY_VALUE}"
        ordered = sorted(actions, key=lambda action: action.occurred_at)
        attributes = {action.output_name: attribute_value(action) for action in ordered}
        operation = "SearchProfiles"
        try:
            profile_ids = self._find(user_id)
            if not profile_ids:
                if not self._create_missing:
                    return (
                        f"no profile has {self._key}={user_id!r} in domain {self._domain!r}; "
                        "create it upstream or set ProfilesCreateMissing=true"
                    )
                operation = "CreateProfile"
                self._create(user_id, attributes)
                return None
            operation = "UpdateProfile"
            for profile_id in profile_ids:
                self._client.update_profile(
                    DomainName=self._domain, ProfileId=profile_id, Attributes=attributes
                )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            return f"{operation}: {error.get('Code', '')}: {error.get('Message', '')}"
        except ProfileLookupError as exc:
            return str(exc)
        return None

    def _find(self, user_id: str) -> list[str]:
        """Every profile the key finds, in ProfileId order, so several matches (duplicates awaiting
        identity resolution) all carry the attribute and a retry touches them in the same order."""
        found: set[str] = set()
        token: str | None = None
        while True:
            request: dict[str, Any] = {
                "DomainName": self._domain,
                "KeyName": self._key,
                "Values": [user_id],
                "MaxResults": SEARCH_PAGE_SIZE,
            }
            if token:
                request["NextToken"] = token
            page = self._client.search_profiles(**request)
            found.update(item["ProfileId"] for item in page.get("Items", []) if item.get("ProfileId"))
            if len(found) > MAX_PROFILES_PER_USER:
                raise ProfileLookupError(
                    f"{self._key}={user_id!r} finds more than {MAX_PROFILES_PER_USER} profiles; "
                    "the profile key must identify one user"
                )
            token = page.get("NextToken")
            if not token:
                return sorted(found)

    def _create(self, user_id: str, attributes: dict[str, str]) -> None:
        request: dict[str, Any] = {
            "DomainName": self._domain,
            STANDARD_KEY_FIELDS[self._key]: user_id,
            "Attributes": attributes,
        }
        self._client.create_profile(**request)
