"""Celery for a Flask app: tasks that run inside the app's context, and the settings every
Spillway app's Celery should start from.

The pattern of Flask's own Celery example (``celery_init_app``): the Celery app is kept in
``app.extensions["celery"]``, where the runtime finds it to run its worker and beat.
"""

from urllib.parse import parse_qsl
from urllib.parse import urlencode
from urllib.parse import urlsplit

from celery import Celery
from celery import Task
from flask import Flask

from spillway.redis_location import sentinel_address

# Beat wakes at least this often, and extends its lock each time; a beat that dies holds the
# lock this long at most, then another takes over (the takeover time, docs/guards.md).
BEAT_LOOP_S = 1.0
BEAT_LOCK_TIMEOUT_S = 5


class FlaskCelery:
    """A Celery app per Flask app, whose tasks run inside that app's context."""

    name = "celery"

    def init_app(self, app: Flask) -> Celery:
        class FlaskTask(Task):
            def __call__(self, *args, **kwargs):
                with app.app_context():
                    return self.run(*args, **kwargs)

        celery_app = Celery(app.import_name, task_cls=FlaskTask)
        celery_app.config_from_object(app.config["CELERY"])
        celery_app.set_default()
        app.extensions[self.name] = celery_app
        return celery_app


def base_config(
    broker_url: str, visibility_timeout: int = 3600, beat_redis_url: str | None = None
) -> dict:
    """Celery settings that keep a task's promise: JSON only (a worker that accepts pickle
    runs whatever a broker client sends it, and never needs C_FORCE_ROOT), acks_late +
    reject_on_worker_lost + prefetch 1 (a task a worker dies in is delivered again instead
    of lost, so tasks must be idempotent).

    And the guards (docs/guards.md): each worker also consumes its own queue
    (``worker_direct``), where it pings itself (spillway.guards.worker_liveness); beat is
    celery-redbeat, whose schedule and leader lock live in redis (``beat_redis_url``, the
    broker's by default: a beat is of no use without it), so a beat may run on every worker
    host: one holds the lock and ticks, the others wait on it and take over within
    ``BEAT_LOCK_TIMEOUT_S`` of its death (spillway.guards.beat_leader: redbeat's scheduler,
    made to ride through a redis outage).
    """
    transport_options = {"visibility_timeout": visibility_timeout}
    beat_options = {"socket_timeout": 5.0, "socket_connect_timeout": 2.0}
    beat_redis = {
        "redbeat_redis_url": beat_redis_url or redis_py_url(broker_url),
        "redbeat_redis_options": beat_options,
    }
    sentinels = sentinel_address(broker_url)
    if sentinels:  # kombu's and redbeat's own spellings of the same Sentinels
        broker_url = sentinels.kombu_url(sentinels.db)
        transport_options.update(sentinels.transport_options())
        url, options = sentinels.redbeat_options(sentinels.db)
        beat_redis = {"redbeat_redis_url": url, "redbeat_redis_options": beat_options | options}
    return {
        "broker_url": broker_url,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": transport_options,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_hijack_root_logger": False,
        "worker_direct": True,
        "beat_scheduler": "spillway.guards.beat_leader:LeaderScheduler",
        "beat_max_loop_interval": BEAT_LOOP_S,
        **beat_redis,
        "redbeat_key_prefix": "spillway:beat:",
        "redbeat_lock_timeout": BEAT_LOCK_TIMEOUT_S,
    }


def redis_py_url(broker_url: str) -> str:
    """The broker's URL as redis-py spells it (redbeat connects with redis-py): kombu's
    ``redis+socket:///path?virtual_host=1`` (what `spillway up` gives) is
    ``unix:///path?db=1``; ``redis://`` and ``rediss://`` are the same in both."""
    parts = urlsplit(broker_url)
    if parts.scheme != "redis+socket":
        return broker_url
    query = [
        ("db" if name == "virtual_host" else name, value) for name, value in parse_qsl(parts.query)
    ]
    return f"unix://{parts.path}" + (f"?{urlencode(query)}" if query else "")


def every(seconds: float, task: str) -> dict:
    """A beat schedule entry; when workers are down, stale ticks expire instead of piling up."""
    return {"task": task, "schedule": seconds, "options": {"expires": max(seconds * 2, 5)}}
