"""Housekeeping tasks that prove the queue works end to end."""

import time

from celery import shared_task

from flashsale.keys import SMOKE_PREFIX
from flashsale.keys import WORKER_HEARTBEAT
from spillway.clients import redis_store


class SmokeKeyRefused(ValueError):
    """`mark` was asked to set a key outside SMOKE_PREFIX; nothing was written."""


@shared_task(name="flashsale.ops.tasks.heartbeat")
def heartbeat() -> None:
    """Record when a worker last ran a beat-scheduled task."""
    redis_store.set(WORKER_HEARTBEAT, f"{time.time():.3f}")


# throws: an expected refusal, logged by Celery in one line without a traceback.
@shared_task(name="flashsale.ops.tasks.mark", throws=(SmokeKeyRefused,))
def mark(key: str, value: str) -> None:
    """Set a ``spillway:smoke:`` redis key: a harmless task for smoke tests of a worker.

    :raise SmokeKeyRefused: any other key (it is not set).
    """
    if not isinstance(key, str) or not key.startswith(SMOKE_PREFIX):
        raise SmokeKeyRefused(f"mark sets only {SMOKE_PREFIX}* keys, not {key!r}")
    redis_store.set(key, value)
