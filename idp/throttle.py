"""Fixed-window failure counters shared by every replica: in Redis when configured,
otherwise in the database (one upsert per failure)."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Executable, Table, bindparam, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from idp.models import ThrottleCounter

# Built once: composing a statement and its cache key costs more than running it, and a
# login checks several counters.
_COUNTERS = cast(Table, ThrottleCounter.__table__)
_COUNT = select(_COUNTERS.c.count).where(
    _COUNTERS.c.key == bindparam("key"), _COUNTERS.c.window_start == bindparam("bucket")
)


@functools.cache
def _increment(dialect: str) -> Executable:
    """One upsert that adds a failure and returns the window's count."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return (
        insert(_COUNTERS)
        .values(key=bindparam("key"), window_start=bindparam("bucket"), count=1)
        .on_conflict_do_update(
            index_elements=[_COUNTERS.c.key, _COUNTERS.c.window_start],
            set_={"count": _COUNTERS.c.count + 1},
        )
        .returning(_COUNTERS.c.count)
    )


class Throttle:
    def __init__(self, redis: Any | None = None, *, window: int = 60) -> None:
        self.redis = redis
        self.window = window

    def _bucket(self, now: datetime) -> int:
        """The window's start in epoch seconds: comparable across counters of different
        window sizes sharing one table, so one purge rule serves them all."""
        ts = int(now.timestamp())
        return ts - ts % self.window

    def retry_after(self, now: datetime) -> int:
        return self.window - int(now.timestamp()) % self.window

    def failures(self, session: Session, key: str, now: datetime) -> int:
        bucket = self._bucket(now)
        if self.redis is not None:
            value = self.redis.get(f"tb:throttle:{key}:{bucket}")
            return int(value or 0)
        row = (
            session.connection()
            .execute(_COUNT, {"key": key[:128], "bucket": bucket})
            .scalar_one_or_none()
        )
        return int(row or 0)

    def fail(self, session: Session, key: str, now: datetime) -> int:
        bucket = self._bucket(now)
        if self.redis is not None:
            name = f"tb:throttle:{key}:{bucket}"
            pipe = self.redis.pipeline()
            pipe.incr(name)
            pipe.expire(name, self.window * 2)
            return int(pipe.execute()[0])
        connection = session.connection()
        counted = connection.execute(
            _increment(connection.dialect.name), {"key": key[:128], "bucket": bucket}
        )
        return int(counted.scalar_one())

    def purge(self, session: Session, now: datetime, *, older_than: int = 2 * 3600) -> None:
        """Drop database windows that ended long ago (Redis keys expire by themselves)."""
        if self.redis is None:
            session.query(ThrottleCounter).filter(
                ThrottleCounter.window_start < int(now.timestamp()) - older_than
            ).delete()
