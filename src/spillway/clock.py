"""The one home of time: the server's clock, and how an instant is written and stored.

Every instant is UTC inside Spillway. Clients may send any offset (``10:00+02:00``); it is
converted once, on the way in, and every answer says ``Z``. The database stores naive UTC
(:class:`UtcDateTime`): SQLite has no zones at all and drops an offset silently, which
stored ``10:00+02:00`` as 10:00 and read it back as 10:00Z, two hours off.
"""

import time
from datetime import datetime
from datetime import timezone

from sqlalchemy.types import DateTime
from sqlalchemy.types import TypeDecorator


def now_ms() -> int:
    """The server's clock, in milliseconds since the epoch (what redis scripts compare)."""
    return int(time.time() * 1000)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def to_utc(moment: datetime) -> datetime:
    """An aware instant in UTC; a naive one is taken to be UTC already (how it is stored).

    :raise OverflowError: the instant in UTC falls outside datetime's years 1…9999.
    """
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def iso(moment: datetime) -> str:
    """``2026-11-27T10:00:00Z``: the API's spelling of an instant."""
    return to_utc(moment).isoformat().replace("+00:00", "Z")


def epoch_ms(moment: datetime) -> int:
    return int(to_utc(moment).timestamp() * 1000)


class UtcDateTime(TypeDecorator):
    """A DateTime column that stores naive UTC and hands back aware UTC, on every database.

    The same DDL as SQLAlchemy's DateTime (no migration): only what is bound and read changes.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else to_utc(value).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        return None if value is None else value.replace(tzinfo=timezone.utc)
