"""Every setting, read from the environment in one place.

``load(config_name)`` returns the Flask config mapping for ``dev``, ``test`` or ``prd``.
Production refuses to start on a setting that would make it unsafe, and says which
environment variable to fix in one line.
"""

import os
import re
from pathlib import Path

from environs import Env
from environs import EnvError
from marshmallow import ValidationError
from marshmallow.validate import Range

from spillway.deploy.run_dir import RunDir

CONFIG_NAMES = ("dev", "test", "prd")
MAX_BODY_BYTES = 64 * 1024
# Values a tutorial or a template would leave behind; none of them is a secret.
DEFAULT_SECRETS = {"", "dev", "secret", "changeme", "change-me", "dev-insecure-key"}
MIN_SECRET_LENGTH = 16
MIN_ADMIN_TOKEN_LENGTH = 32


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
    _check_payment(config)
    if config_name == "prd":
        _refuse_unsafe_production(config)
    return config


def _check_payment(config: dict) -> None:
    """The grace must outlast a gateway call: a payment claimed just before its deadline
    is then still waiting on its own call, not voided under it, when the sweeper comes."""
    grace_ms, timeout_s = config["PAYING_GRACE_MS"], config["GATEWAY_TIMEOUT_S"]
    if grace_ms <= timeout_s * 1000:
        raise SettingsError(
            f"SPILLWAY_PAYING_GRACE_MS ({grace_ms}) must exceed SPILLWAY_GATEWAY_TIMEOUT_S "
            f"({timeout_s:g} s, so more than {timeout_s * 1000:.0f} ms)")


def _read(env: Env, config_name: str) -> dict:
    run_dir = Path(env.str("SPILLWAY_RUN_DIR", "run")).resolve()
    redis_url = env.str("SPILLWAY_REDIS_URL", "redis://127.0.0.1:6379/0")
    broker_url = env.str("SPILLWAY_BROKER_URL", redis_url)
    database_url = env.str("DATABASE_URL", f"sqlite:///{RunDir(run_dir).database}")
    return {
        "ENV_NAME": config_name,
        "DEBUG": env.bool("SPILLWAY_DEBUG", config_name == "dev"),
        "TESTING": config_name == "test",
        "LOG_LEVEL": env.log_level("SPILLWAY_LOG_LEVEL", "INFO"),
        "SECRET_KEY": env.str("SPILLWAY_SECRET_KEY", "dev-insecure-key"),
        "ADMIN_TOKEN": env.str("SPILLWAY_ADMIN_TOKEN", ""),
        "RATE_LIMITS_ENABLED": env.str("SPILLWAY_RATE_LIMITS", "on").lower() != "off",
        # `off` drops the request-latency middleware (to measure what it costs).
        "METRICS_ENABLED": env.str("SPILLWAY_METRICS", "on").lower() != "off",
        **_rate_limit_settings(env, redis_url),
        # nginx is the one proxy in front of the app: trust that many X-Forwarded-For hops
        # (0 when clients reach `spillway serve` directly, or they could pick their address).
        "PROXY_HOPS": env.int("SPILLWAY_PROXY_HOPS", 1),
        "PURCHASE_TOKEN_TTL_S": env.int("SPILLWAY_PURCHASE_TOKEN_TTL", 120),
        "RUN_DIR": str(run_dir),
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": _engine_options(env, database_url),
        "REDIS_URL": redis_url,
        # `off` sends each purchase's EVALSHA on its own (spillway/redis_batch.py).
        "REDIS_BATCHING": env.str("SPILLWAY_REDIS_BATCHING", "on").lower() != "off",
        # An outbox entry a worker took and never acknowledged for this long is re-driven.
        "OUTBOX_STUCK_MS": env.int("SPILLWAY_OUTBOX_STUCK_MS", 30_000),
        # How long redis keeps what the ledger holds too: a final order's record, a sale's
        # idempotency keys and holdings after its last payment deadline (sales/archive.py).
        "REDIS_RETENTION_S": env.int("SPILLWAY_REDIS_RETENTION_S", 7 * 24 * 3600,
                                     validate=Range(60, 365 * 24 * 3600)),
        # A new sale's stock is split over this many redis keys (sales/stock.py).
        "STOCK_SHARDS": env.int("SPILLWAY_STOCK_SHARDS", 1, validate=Range(1, 64)),
        "PAYMENT_URL": env.str("SPILLWAY_PAYMENT_URL", "http://127.0.0.1:8099").rstrip("/"),
        # One call to the gateway, connect to last byte (orders/payment.py).
        "GATEWAY_TIMEOUT_S": env.float("SPILLWAY_GATEWAY_TIMEOUT_S", 15.0,
                                       validate=Range(min=0.1, max=300)),
        # A payment still 'paying' this long after its order's deadline is resolved with
        # the gateway (void: captured → paid, voided → cancelled); see _check_payment.
        "PAYING_GRACE_MS": env.int("SPILLWAY_PAYING_GRACE_MS", 60_000,
                                   validate=Range(min=1, max=86_400_000)),
        # Live stock streams: how often a process reads watched sales, how often an idle
        # stream sends a keep-alive comment (below nginx's proxy_read_timeout).
        "STREAM_POLL_MS": env.int("SPILLWAY_STREAM_POLL_MS", 200),
        "STREAM_HEARTBEAT_S": env.float("SPILLWAY_STREAM_HEARTBEAT_S", 15.0),
        # Requests held open (spillway.security.concurrency): a stream ends after its
        # lifetime and the browser reconnects; caps per worker process, and per client
        # address while rate limits are on. A worker holds 10,000 streams in about 230 MB
        # (bench/sse_fanout.py); keep the cap under its gunicorn worker connections.
        "STREAM_MAX_LIFETIME_S": env.float("SPILLWAY_STREAM_MAX_LIFETIME_S", 600.0,
                                           validate=Range(min=1)),
        "STREAMS_PER_WORKER": env.int("SPILLWAY_STREAMS_PER_WORKER", 15_000,
                                      validate=Range(min=1)),
        "STREAMS_PER_ADDRESS": env.int("SPILLWAY_STREAMS_PER_ADDRESS", 32,
                                       validate=Range(min=1)),
        "DEMO_SLOW_PER_WORKER": env.int("SPILLWAY_DEMO_SLOW_PER_WORKER", 2_000,
                                        validate=Range(min=1)),
        "DEMO_SLOW_PER_ADDRESS": env.int("SPILLWAY_DEMO_SLOW_PER_ADDRESS", 20,
                                         validate=Range(min=1)),
        "MEMCACHED_SERVERS": env.list("SPILLWAY_MEMCACHED_SERVERS", ["127.0.0.1:11211"]),
        # /readyz reuses a process's last checks this long: a flood costs one run a second.
        "READYZ_CACHE_S": env.float("SPILLWAY_READYZ_CACHE_S", 1.0, validate=Range(0, 60)),
        "MAX_CONTENT_LENGTH": MAX_BODY_BYTES,
        "API_TITLE": "Spillway",
        "API_VERSION": "v1",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/api/v1",
        "OPENAPI_JSON_PATH": "openapi.json",
        "CELERY": _celery_settings(env, broker_url),
    }


def _engine_options(env: Env, database_url: str) -> dict:
    """Pool settings of a server database (PostgreSQL); SQLite keeps SQLAlchemy's defaults.

    Every process holds up to pool size + overflow connections: the sum over gunicorn
    workers and Celery processes must stay under the server's max_connections
    (DEPLOYMENT.md). Pre-ping replaces a connection the server or a proxy closed.
    """
    if not database_url.startswith(("postgresql", "postgres")):
        return {}
    return {
        "pool_size": env.int("SPILLWAY_DB_POOL_SIZE", 5),
        "max_overflow": env.int("SPILLWAY_DB_MAX_OVERFLOW", 5),
        "pool_timeout": env.float("SPILLWAY_DB_POOL_TIMEOUT", 10.0),
        "pool_pre_ping": True,
        "pool_recycle": 1800,
        # Timestamps are stored without a zone and are all UTC (sales.service._utc); the
        # session's zone decides how an aware datetime is stored, so it is pinned.
        "connect_args": {"connect_timeout": 5, "application_name": "spillway",
                         "options": "-c timezone=UTC"},
    }


def _rate_limit_settings(env: Env, redis_url: str) -> dict:
    # Flask-Limiter's own settings (RATELIMIT_*): counters in the app's redis, fixed windows
    # (one round trip a hit). A redis that is down must not take reads down with it: the
    # limiter then lets requests through, and whatever needs redis answers 503 by itself.
    return {
        "RATELIMIT_ENABLED": env.str("SPILLWAY_RATE_LIMITS", "on").lower() != "off",
        # `limits` spells a redis unix socket redis+unix:// (redis-py: unix://).
        "RATELIMIT_STORAGE_URI": redis_url.replace("unix://", "redis+unix://", 1)
        if redis_url.startswith("unix://") else redis_url,
        "RATELIMIT_STORAGE_OPTIONS": {"socket_timeout": 2.0, "socket_connect_timeout": 1.0},
        "RATELIMIT_STRATEGY": "fixed-window",
        "RATELIMIT_KEY_PREFIX": "spillway",
        "RATELIMIT_SWALLOW_ERRORS": True,
        "RATELIMIT_HEADERS_ENABLED": False,
        "RATELIMIT_DEFAULT": env.str("SPILLWAY_RATE_LIMIT_PER_IP", "20 per second;600 per minute",
                                     validate=_rate_limits),
        "RATELIMIT_PER_BUYER": env.str("SPILLWAY_RATE_LIMIT_PER_BUYER",
                                       "5 per second;60 per minute", validate=_rate_limits),
        # A limit per buyer is a limit per account: this is what stops minting accounts.
        "RATELIMIT_SIGNUP": env.str("SPILLWAY_SIGNUP_LIMIT_PER_IP", "5 per minute;50 per day",
                                    validate=_rate_limits),
    }


def _rate_limits(value: str) -> None:
    """Flask-Limiter's syntax, e.g. "5 per second;60 per minute"."""
    from limits import parse_many

    try:
        parse_many(value)
    except ValueError:
        raise ValidationError(f"not a rate limit such as '5 per second': {value!r}") from None


def _nginx_rate(value: str) -> None:
    if not re.fullmatch(r"[1-9][0-9]*r/[sm]", value):
        raise ValidationError(f"not an nginx rate such as '20r/s': {value!r}")


def nginx_rate_limits() -> dict:
    """nginx's per-address limit, for `spillway up` to render (SPILLWAY_RATE_LIMITS=off: none).

    :raise SettingsError: a malformed value.
    """
    env = Env()
    try:
        return {
            "rate_limits": env.str("SPILLWAY_RATE_LIMITS", "on").lower() != "off",
            # nginx's syntax: "20r/s"; the burst is answered at once (nodelay), then 429.
            "nginx_rate_per_ip": env.str("SPILLWAY_NGINX_RATE_PER_IP", "20r/s",
                                         validate=_nginx_rate),
            "nginx_burst_per_ip": env.int("SPILLWAY_NGINX_BURST_PER_IP", 40),
            # Requests in progress at once per address (limit_conn): a held stream or a
            # slow upload is one each; a browser opens about six.
            "nginx_conn_per_ip": env.int("SPILLWAY_NGINX_CONN_PER_IP", 64,
                                         validate=Range(1, 1_000_000)),
        }
    except EnvError as exc:
        raise SettingsError(str(exc)) from None


def _redis_size(value: str) -> None:
    if not re.fullmatch(r"[1-9][0-9]*(b|kb?|mb?|gb?)?", value, flags=re.IGNORECASE):
        raise ValidationError(f"not a redis memory size such as '1gb' or '512mb': {value!r}")


def redis_maxmemory() -> str:
    """redis's memory ceiling for `spillway up` to render: SPILLWAY_REDIS_MAXMEMORY, else a
    quarter of the machine's memory (room for the app, memcached and the fork that
    rewrites the AOF, which can need as much again).

    :raise SettingsError: a malformed value.
    """
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    default = f"{max(physical // 4 // 2**20, 64)}mb"
    try:
        return Env().str("SPILLWAY_REDIS_MAXMEMORY", default, validate=_redis_size)
    except EnvError as exc:
        raise SettingsError(str(exc)) from None


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
            "archive-sales": _every(600.0, "spillway.sales.archive.archive_sales"),
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
    weakness = _admin_token_weakness(config["ADMIN_TOKEN"], secret)
    if weakness:
        raise SettingsError(
            f"SPILLWAY_ADMIN_TOKEN is {weakness}: set a random value of "
            f"{MIN_ADMIN_TOKEN_LENGTH}+ characters for prd (spillway up generates one)"
        )


def _admin_token_weakness(token: str, secret: str) -> str | None:
    # The admin token is typed into /ops and sent on every admin call, and it grants every
    # admin right: as long as the random one `spillway up` generates (token_urlsafe(32), 43
    # characters), and never the signing key, whose leak would then give away both.
    if len(token) < MIN_ADMIN_TOKEN_LENGTH:
        return f"shorter than {MIN_ADMIN_TOKEN_LENGTH} characters"
    if token.lower() in DEFAULT_SECRETS or len(set(token)) == 1:  # "xxxx…": a placeholder
        return "a default or placeholder value"
    if token == secret:
        return "the same as SPILLWAY_SECRET_KEY"
    return None
