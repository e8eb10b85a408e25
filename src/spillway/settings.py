"""Every setting, read from the environment in one place.

``load(config_name)`` returns the Flask config mapping for ``dev``, ``test`` or ``prd``.
Production refuses to start on a setting that would make it unsafe, and says which
environment variable to fix in one line.
"""

import os
from pathlib import Path

from environs import Env
from environs import EnvError

CONFIG_NAMES = ("dev", "test", "prd")
MAX_BODY_BYTES = 64 * 1024
# Values a tutorial or a template would leave behind; none of them is a secret.
DEFAULT_SECRETS = {"", "dev", "secret", "changeme", "change-me", "dev-insecure-key"}
MIN_SECRET_LENGTH = 16


class SettingsError(RuntimeError):
    """A setting is missing or unsafe; the message names the variable."""


def load(config_name: str) -> dict:
    """Read the environment and return the config for ``config_name``.

    :raise SettingsError: unknown config name, a malformed value, or an unsafe ``prd``.
    """
    if config_name not in CONFIG_NAMES:
        raise SettingsError(
            f"unknown config {config_name!r}: choose one of {', '.join(CONFIG_NAMES)}"
        )
    env = Env()
    try:
        config = _read(env, config_name)
    except EnvError as exc:
        raise SettingsError(str(exc)) from None
    if config_name == "prd":
        _refuse_unsafe_production(config)
    return config


def _read(env: Env, config_name: str) -> dict:
    run_dir = Path(env.str("SPILLWAY_RUN_DIR", "run")).resolve()
    redis_url = env.str("SPILLWAY_REDIS_URL", "redis://127.0.0.1:6379/0")
    broker_url = env.str("SPILLWAY_BROKER_URL", redis_url)
    return {
        "ENV_NAME": config_name,
        "DEBUG": env.bool("SPILLWAY_DEBUG", config_name == "dev"),
        "TESTING": config_name == "test",
        "LOG_LEVEL": env.log_level("SPILLWAY_LOG_LEVEL", "INFO"),
        "SECRET_KEY": env.str("SPILLWAY_SECRET_KEY", "dev-insecure-key"),
        "ADMIN_TOKEN": env.str("SPILLWAY_ADMIN_TOKEN", ""),
        "RATE_LIMITS_ENABLED": env.str("SPILLWAY_RATE_LIMITS", "on").lower() != "off",
        "RUN_DIR": str(run_dir),
        "SQLALCHEMY_DATABASE_URI": env.str(
            "DATABASE_URL", f"sqlite:///{run_dir / 'spillway.db'}"
        ),
        "REDIS_URL": redis_url,
        # An outbox entry a worker took and never acknowledged for this long is re-driven.
        "OUTBOX_STUCK_MS": env.int("SPILLWAY_OUTBOX_STUCK_MS", 30_000),
        "PAYMENT_URL": env.str("SPILLWAY_PAYMENT_URL", "http://127.0.0.1:8099").rstrip("/"),
        # Live stock streams: how often a process reads watched sales, how often an idle
        # stream sends a keep-alive comment (below nginx's proxy_read_timeout).
        "STREAM_POLL_MS": env.int("SPILLWAY_STREAM_POLL_MS", 200),
        "STREAM_HEARTBEAT_S": env.float("SPILLWAY_STREAM_HEARTBEAT_S", 15.0),
        "MEMCACHED_SERVERS": env.list("SPILLWAY_MEMCACHED_SERVERS", ["127.0.0.1:11211"]),
        "MAX_CONTENT_LENGTH": MAX_BODY_BYTES,
        "API_TITLE": "Spillway",
        "API_VERSION": "v1",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/api/v1",
        "OPENAPI_JSON_PATH": "openapi.json",
        "CELERY": _celery_settings(env, broker_url),
    }


def _celery_settings(env: Env, broker_url: str) -> dict:
    # JSON only: a worker that accepts pickle runs whatever a broker client sends it.
    # acks_late + reject_on_worker_lost + prefetch 1: a task a worker dies in is delivered
    # again instead of lost; tasks must therefore be idempotent.
    visibility_timeout = env.int("SPILLWAY_CELERY_VISIBILITY_TIMEOUT", 3600)
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
        # Drains also start on demand (the first reservation into an idle outbox); the
        # schedule is the safety net that makes a lost nudge or a dead web process harmless.
        "beat_schedule": {
            "heartbeat": _every(env.float("SPILLWAY_HEARTBEAT_SECONDS", 10.0),
                                "spillway.ops.tasks.heartbeat"),
            "drain-outbox": _every(1.0, "spillway.sales.tasks.drain_outbox"),
            "sweep-outbox": _every(10.0, "spillway.sales.tasks.sweep_outbox"),
            "expire-payments": _every(1.0, "spillway.sales.tasks.expire_payments"),
            "reconcile": _every(60.0, "spillway.sales.tasks.reconcile_sales"),
        },
    }


def _every(seconds: float, task: str) -> dict:
    # expires: when workers are down, stale ticks are dropped instead of piling up.
    return {"task": task, "schedule": seconds, "options": {"expires": max(seconds * 2, 5)}}


def _refuse_unsafe_production(config: dict) -> None:
    if config["DEBUG"] or os.environ.get("FLASK_DEBUG", "").lower() in {"1", "true", "yes"}:
        raise SettingsError("SPILLWAY_DEBUG (or FLASK_DEBUG) must be off in prd")
    secret = config["SECRET_KEY"]
    if secret.lower() in DEFAULT_SECRETS or len(secret) < MIN_SECRET_LENGTH:
        raise SettingsError(
            f"SPILLWAY_SECRET_KEY is missing or a default: set a random value of "
            f"{MIN_SECRET_LENGTH}+ characters for prd"
        )
    if not config["ADMIN_TOKEN"]:
        raise SettingsError("SPILLWAY_ADMIN_TOKEN is not set: prd needs an admin token")
