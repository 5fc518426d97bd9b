"""Errors a user can act on.

Every error tunewise raises for bad input names *where* the problem is (a file, a line,
a field) and *how to fix it*. The CLI prints ``str(error)`` as one line; ``--debug``
adds the traceback.
"""

from __future__ import annotations


class TunewiseError(Exception):
    """Base class: a problem the user can fix, with the place and the fix."""

    def __init__(self, message: str, *, where: str | None = None, fix: str | None = None):
        super().__init__(message)
        self.message = message
        self.where = where
        self.fix = fix

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.fix:
            text += f" (fix: {self.fix})"
        return text


class TaskCardError(TunewiseError):
    """The task card is missing, not YAML, or fails validation."""


class DataError(TunewiseError):
    """A data file is missing, unreadable, or has rows that fail validation."""


class StoreError(TunewiseError):
    """The run store cannot be opened, migrated, or does not hold what was asked for."""


class MetricError(TunewiseError):
    """A metric name or custom metric hook cannot be resolved or fails on the data."""
