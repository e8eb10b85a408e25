"""Housekeeping tasks that prove the queue works end to end."""

import time

from celery import shared_task

from spillway.extensions import redis_store

HEARTBEAT_KEY = "spillway:worker:heartbeat"


@shared_task(name="spillway.ops.tasks.heartbeat")
def heartbeat() -> None:
    """Record when a worker last ran a beat-scheduled task."""
    redis_store.set(HEARTBEAT_KEY, f"{time.time():.3f}")


@shared_task(name="spillway.ops.tasks.mark")
def mark(key: str, value: str) -> None:
    """Set a redis key: a harmless task for smoke tests of a worker."""
    redis_store.set(key, value)
