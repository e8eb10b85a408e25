"""Celery for a Flask app: tasks that run inside the app's context, and the settings every
Spillway app's Celery should start from.

The pattern of Flask's own Celery example (``celery_init_app``): the Celery app is kept in
``app.extensions["celery"]``, where the runtime finds it to run its worker and beat.
"""

from celery import Celery
from celery import Task
from flask import Flask


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


def base_config(broker_url: str, visibility_timeout: int = 3600) -> dict:
    """Celery settings that keep a task's promise: JSON only (a worker that accepts pickle
    runs whatever a broker client sends it, and never needs C_FORCE_ROOT), acks_late +
    reject_on_worker_lost + prefetch 1 (a task a worker dies in is delivered again instead
    of lost, so tasks must be idempotent).

    And each worker also consumes its own queue (``worker_direct``), where it pings itself
    (spillway.guards.worker_liveness, docs/guards.md).
    """
    return {
        "broker_url": broker_url,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {"visibility_timeout": visibility_timeout},
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
    }


def every(seconds: float, task: str) -> dict:
    """A beat schedule entry; when workers are down, stale ticks expire instead of piling up."""
    return {"task": task, "schedule": seconds, "options": {"expires": max(seconds * 2, 5)}}
