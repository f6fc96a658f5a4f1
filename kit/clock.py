"""Time is a parameter: domain code asks a `Clock`, never `datetime.now()` directly."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current moment, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock:
    """A clock for tests and replays: it moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)


def epoch(moment: datetime) -> int:
    """Seconds since the epoch, as JWT `NumericDate` (RFC 7519 §2)."""
    return int(moment.timestamp())


def utc(moment: datetime) -> datetime:
    """Normalise a datetime read back from a database that drops the zone (SQLite)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def monotonic() -> float:
    return time.monotonic()
