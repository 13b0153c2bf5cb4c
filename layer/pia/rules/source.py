"""What a rule source is: the contract the poller reads through, and the one failure it raises.

Kept apart from the poller so the sources (S3, Honeycode) depend on this contract, not on the
poller that uses them.
"""

from __future__ import annotations

from typing import Protocol

from pia.rules.sheets import ValidationReport
from pia.rules.table import RuleTable


class SourceFailure(RuntimeError):
    """The rule source could not be read as a whole. ``missing`` marks a source with nothing in it
    yet (no file under the prefix), which is only an error once a ruleset has been published."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


class RuleSource(Protocol):
    @property
    def description(self) -> str: ...

    def read(self) -> RuleTable:
        """The whole table, or :class:`SourceFailure`."""
        ...

    def write_report(self, report: ValidationReport) -> str | None:
        """Store the report where the marketer finds it and return its location. A report that
        cannot be stored is logged and gives ``None``: it must never stop the rules from publishing."""
        ...
