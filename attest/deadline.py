"""Deadlines: one monotonic end time that bounds all the work a caller started."""

from __future__ import annotations

import time
from dataclasses import dataclass

from attest.errors import DeadlineExceeded

DEFAULT_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class Deadline:
    """A point in monotonic time after which work must stop."""

    end: float

    @classmethod
    def after(cls, seconds: float | None) -> Deadline:
        """A deadline ``seconds`` from now (``None`` means the default CLI timeout)."""
        return cls(time.monotonic() + (DEFAULT_TIMEOUT_SECONDS if seconds is None else seconds))

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.end - time.monotonic())

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def check(self, what: str) -> None:
        """Raise :class:`DeadlineExceeded` naming ``what`` if no time is left."""
        if self.expired:
            raise DeadlineExceeded(f"{what}: deadline exceeded")

    def timeout(self, cap: float) -> float:
        """A per-operation timeout: the smaller of ``cap`` and what is left (at least 1 ms)."""
        return max(0.001, min(cap, self.remaining()))
