"""Operational counters shared by every process, kept in one redis hash.

Best effort by design: a counter must never turn a good request into a failed one, so
an unreachable redis only loses the increment.
"""

import logging

from spillway.clients import redis_store

log = logging.getLogger(__name__)

COUNTERS_KEY = "spillway:counters"


def incr(name: str, amount: int = 1) -> None:
    """Add ``amount`` to counter ``name``."""
    try:
        redis_store.hincrby(COUNTERS_KEY, name, amount)
    except Exception as exc:
        log.debug("counter %s not recorded: %s", name, exc)


def read() -> dict[str, int]:
    """Every counter and its value."""
    return {k.decode(): int(v) for k, v in redis_store.hgetall(COUNTERS_KEY).items()}
