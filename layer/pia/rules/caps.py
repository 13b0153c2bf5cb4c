"""Frequency caps: how often a reset rule may fire its event for one user.

The ``Cap`` cell reads ``once``, ``N per hour``, ``N per K hours``, ``N per day``, ``N per K days``,
``N per week`` or ``N per K weeks`` (``time``/``times`` may follow N: ``3 times per day``). Windows are
fixed, not sliding, so a cap of any size needs two numbers of state per counter (when the window
opened and how many fires it has had), never one timestamp per fire:

- an hour window starts at the top of the clock hour of the crossing that opens it, in the
  deployment's time zone, and lasts K hours;
- a day (or week) window starts at local midnight of the crossing that opens it and lasts K (or 7·K)
  calendar days, so ``3 per day`` means at most 3 on each calendar day;
- ``once`` is one fire per user for the life of the rule.

A window opens at the first crossing after the previous one closed, so ``1 per 7 days`` never fires
twice within 7 calendar days. Time is the event's timestamp, never later than the clock of the batch
that counts it (a device clock set to 2099 cannot open a window in 2099) and never earlier than the
open window's start (a late event counts against the window that is open).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

MAX_CAP_LIMIT = 1_000_000
MAX_CAP_DAYS = 366
MAX_CAP_TEXT = 60
"""The longest cap is ``1000000 times per 52 weeks``; a longer cell is refused before it is read."""
CAP_HELP = "write once, or N per hour, N per day, N per week, N per K hours/days/weeks (such as 3 per 7 days)"


class CapUnit(StrEnum):
    HOUR = "hour"
    DAY = "day"
    EVER = "ever"


_UNITS = {"hour": (CapUnit.HOUR, 1), "day": (CapUnit.DAY, 1), "week": (CapUnit.DAY, 7)}
_MAX_SPAN = {CapUnit.HOUR: MAX_CAP_DAYS * 24, CapUnit.DAY: MAX_CAP_DAYS}
_GRAMMAR = re.compile(
    r"(?P<limit>\S+?)\s*(?:times?\s+|x\s+)?per\s+(?:(?P<span>\S+)\s+)?(?P<unit>hours?|days?|weeks?)",
    re.IGNORECASE,
)


class CapError(ValueError):
    """A Cap cell that does not follow the grammar; the message names the part at fault."""


@dataclass(frozen=True)
class CapWindow:
    """The open window of one counter: its start (epoch seconds) and its fires; none is open while
    ``used`` is 0 (a start of 0 is a real moment: an event stamped 1970-01-01)."""

    start: int = 0
    used: int = 0


@dataclass(frozen=True)
class Cap:
    limit: int
    unit: CapUnit
    span: int = 1
    """Hours or days per window; unused for ``once``."""

    @property
    def source(self) -> str:
        if self.unit is CapUnit.EVER:
            return "once"
        unit = self.unit.value if self.span == 1 else f"{self.span} {self.unit.value}s"
        return f"{self.limit} per {unit}"

    def window_end(self, start: int, zone: ZoneInfo) -> int | None:
        """When a window opened at ``start`` closes (``None``: never)."""
        match self.unit:
            case CapUnit.EVER:
                return None
            case CapUnit.HOUR:
                return start + self.span * 3600
            case CapUnit.DAY:
                first = datetime.fromtimestamp(start, zone).date()
                return int(datetime.combine(first + timedelta(days=self.span), time(0), zone).timestamp())

    def window_start(self, moment: int, zone: ZoneInfo) -> int:
        local = datetime.fromtimestamp(moment, zone)
        match self.unit:
            case CapUnit.EVER:
                return moment
            case CapUnit.HOUR:
                return int(local.replace(minute=0, second=0, microsecond=0).timestamp())
            case CapUnit.DAY:
                return int(datetime.combine(local.date(), time(0), zone).timestamp())

    def admit(self, window: CapWindow, moment: int, zone: ZoneInfo) -> tuple[bool, CapWindow]:
        """Whether a crossing at ``moment`` may fire, and the window afterwards. ``moment`` before the
        open window's start counts against the open window."""
        if window.used:
            end = self.window_end(window.start, zone)
            if end is None or moment < end:
                if window.used >= self.limit:
                    return False, window
                return True, CapWindow(window.start, window.used + 1)
        return True, CapWindow(self.window_start(moment, zone), 1)

    def exhausted(self, window: CapWindow) -> bool:
        """Whether no later crossing can ever fire (only a ``once`` cap, once used)."""
        return self.unit is CapUnit.EVER and window.used >= self.limit


def _whole(text: str, what: str, upper: int, column_text: str) -> int:
    """``text`` as a number in 1..``upper``: ASCII digits only (``²`` is a digit to Python, not to
    ``int``), and never more of them than ``upper`` has, so no cell makes a huge integer."""
    position = column_text.find(text) + 1
    if not (text.isascii() and text.isdigit()):
        raise CapError(f'"{text}" at position {position} is not a whole number; {CAP_HELP}')
    value = int(text) if len(text) <= len(str(upper)) else upper + 1
    if not 1 <= value <= upper:
        shown = text if len(text) <= 12 else f"{text[:9]}..."
        raise CapError(f"{what} {shown} at position {position} is outside 1..{upper}")
    return value


def parse_cap(text: str) -> Cap:
    """Read a Cap cell (already known not to be empty or ``na``)."""
    words = " ".join(text.split())
    if len(words) > MAX_CAP_TEXT:
        raise CapError(f"longer than {MAX_CAP_TEXT} characters; {CAP_HELP}")
    if words.lower() == "once":
        return Cap(1, CapUnit.EVER)
    if words.lower().startswith("once "):
        words = "1 " + words[5:]
    match = _GRAMMAR.fullmatch(words)
    if match is None:
        per = words.lower().find("per")
        where = (
            "expected N per hour/day/week at position 1"
            if per < 0
            else f"expected [K] hour(s), day(s) or week(s) at position {per + 5}"
        )
        raise CapError(f"{where}; {CAP_HELP}")
    limit = _whole(match["limit"], "a limit of", MAX_CAP_LIMIT, words)
    unit, factor = _UNITS[match["unit"].lower().rstrip("s")]
    span_text = match["span"]
    if span_text is None:
        span = factor
    else:
        span = _whole(span_text, "a window of", _MAX_SPAN[unit] // factor, words) * factor
    if span > _MAX_SPAN[unit]:
        raise CapError(f"a window longer than {MAX_CAP_DAYS} days; {CAP_HELP}")
    return Cap(limit, unit, span)
