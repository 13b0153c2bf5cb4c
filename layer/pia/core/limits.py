"""Bounds on untrusted input, so no event field reaches a key or an API unbounded.

The Pinpoint figures are Pinpoint's own limits; the rest keep a DynamoDB item under 1 KB in the
common case and a hostile record from costing more than a normal one.
"""

from datetime import UTC, datetime
from decimal import Decimal

MAX_EVENT_TYPE = 50
MAX_ATTRIBUTE_NAME = 50
MAX_ATTRIBUTE_VALUE = 100
MAX_OUTPUT_NAME = 50
MAX_USER_ID = 256
MAX_ENDPOINT_ID = 256
MAX_ATTRIBUTES = 50
MAX_METRICS = 50
MAX_RECORD_BYTES = 256 * 1024
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
