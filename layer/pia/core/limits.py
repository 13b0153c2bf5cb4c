"""Bounds on untrusted input, so no event field reaches a key or an API unbounded.

A bound decides what happens to a record only when no correct processing of it exists past it: a
record is rejected as poison for a field the engine must keep whole and cannot (a user id too long
for the targets' keys). A field no rule could ever match (an attribute value longer than a rule's
AttributeValue may be) is ignored instead, and the record still counts for every other rule.

The Pinpoint figures are Pinpoint's own limits for events (not its smaller endpoint-attribute ones).
"""

from datetime import UTC, datetime
from decimal import Decimal

MAX_EVENT_TYPE = 50
MAX_ATTRIBUTE_NAME = 50
MAX_ATTRIBUTE_VALUE = 200
"""Pinpoint's limit for an event attribute value; a rule's AttributeValue has the same bound, so a
longer value can match no rule. (Pinpoint's endpoint attributes stop at 100; the engine writes only
``ready``/``not-ready`` there.)"""
MAX_OUTPUT_NAME = 50
MAX_USER_ID = 256
MAX_ENDPOINT_ID = 256
MAX_EVENT_ID = 256
MAX_RECORD_BYTES = 1024 * 1024
"""Kinesis Data Streams' largest record (1 MiB): anything bigger never arrives through the stream."""
MAX_ENDPOINTS_PER_USER = 15

MIN_EVENT_TIME = datetime(1973, 3, 3, 9, 46, 40, tzinfo=UTC)
"""Epoch millisecond 100,000,000,000. A smaller number is almost surely epoch *seconds*: read as
milliseconds it would land in January 1970 and silently miss every date rule, so it is refused; an
ISO 8601 time before it is refused too, so one range holds whatever form the time takes."""
MAX_EVENT_TIME = datetime(9000, 1, 1, tzinfo=UTC)
"""Later than any real event, and a millennium short of ``datetime``'s end, so the date arithmetic an
accepted event meets later (a zone's offset, a rollup expiring RawEventRetentionDays after its last
day) can never overflow into a function error."""
MIN_EPOCH_MILLIS = int(MIN_EVENT_TIME.timestamp()) * 1000
MAX_EPOCH_MILLIS = int(MAX_EVENT_TIME.timestamp()) * 1000
MAX_DOUBLE = Decimal("1.7976931348623157e308")
"""Metrics are doubles in Pinpoint and in every target's payload: a larger magnitude has no meaning."""
