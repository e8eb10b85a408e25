"""A dependency's failure in one line: the setting to look at, its value and the cause.

What a `spillway` command prints instead of a traceback when the database, redis, the
broker or memcached cannot be reached or refuses (a login, a host down, a closed port),
for instance ``DATABASE_URL=postgresql+psycopg://shop:***@db/shop: connection failed: …
FATAL:  role "shop" is not permitted to log in``. `spillway up` passes on the line of the
command it ran (the migration), so a start that fails ends in that one line too.
"""

import re
import traceback
from collections.abc import Mapping

import redis
import sqlalchemy.exc
from kombu.exceptions import OperationalError as BrokerError
from pymemcache.exceptions import MemcacheError

# (the environment variable, the config key the runtime or the app reads it into)
DATABASE = ("DATABASE_URL", "SQLALCHEMY_DATABASE_URI")
REDIS = ("SPILLWAY_REDIS_URL", "REDIS_URL")
BROKER = ("SPILLWAY_BROKER_URL", "BROKER_URL")
MEMCACHED = ("SPILLWAY_MEMCACHED_SERVERS", "MEMCACHED_SERVERS")
DATABASE_ERRORS = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
)
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
# The password of a URL (scheme://user:password@host), never printed.
URL_PASSWORD = re.compile(r"(//[^:/@]*):[^@/]*@")


def setting_of(exc: BaseException) -> tuple[str, str] | None:
    """Which dependency's setting ``exc`` is about, or None if it is no dependency's."""
    if isinstance(exc, DATABASE_ERRORS):
        return DATABASE
    if isinstance(exc, BrokerError):
        return BROKER
    if isinstance(exc, REDIS_ERRORS):
        return REDIS
    if isinstance(exc, MemcacheError) or (
        isinstance(exc, OSError) and raised_in(exc, "pymemcache")
    ):
        return MEMCACHED
    return None


def describe(exc: BaseException, config: Mapping | None = None) -> str | None:
    """``exc`` as ``SETTING=value: cause`` (the value from ``config``, a password hidden),
    or None if it is no dependency's failure."""
    found = setting_of(exc)
    if found is None:
        return None
    setting, key = found
    value = (config or {}).get(key)
    if isinstance(value, list | tuple):
        value = ",".join(map(str, value))
    return (
        f"{setting}={hide_password(str(value))}: {cause(exc)}"
        if value
        else f"{setting}: {cause(exc)}"
    )


def one_line(exc: BaseException, config: Mapping | None = None) -> str:
    """:func:`describe`, or the exception's type and first line where no setting is known."""
    return describe(exc, config) or f"{type(exc).__name__}: {cause(exc)}"


def cause(exc: BaseException) -> str:
    """What the driver said, its first line, its whitespace collapsed (SQLAlchemy's own
    lines, the statement and a link, say nothing the operator can act on)."""
    inner = getattr(exc, "orig", None) or exc
    lines = str(inner).strip().splitlines()
    return " ".join(lines[0].split()) if lines else type(inner).__name__


def hide_password(url: str) -> str:
    return URL_PASSWORD.sub(r"\1:***@", url)


def raised_in(exc: BaseException, package: str) -> bool:
    """Whether a frame of ``exc``'s traceback is in ``package`` (a socket error pymemcache
    let through is memcached's)."""
    return any(
        frame.f_globals.get("__name__", "").startswith(package)
        for frame, _line in traceback.walk_tb(exc.__traceback__)
    )
