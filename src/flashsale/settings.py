"""The flash sale's settings, read from the environment in one place, on top of the
runtime's (spillway.settings.runtime: config name, debug, log level, redis, memcached,
rate limits per address, the proxy hop, metrics).

``load(config_name)`` returns the Flask config mapping for ``dev``, ``test`` or ``prd``.
Production refuses to start on a setting that would make it unsafe, and says which
environment variable to fix in one line.
"""

from pathlib import Path

from environs import Env
from marshmallow.validate import Range

from spillway import settings as runtime_settings
from spillway.celery_app import base_config
from spillway.celery_app import every
from spillway.deploy.run_dir import RunDir
from spillway.settings import DEFAULT_SECRETS
from spillway.settings import SettingsError
from spillway.settings import rate_limit

MIN_ADMIN_TOKEN_LENGTH = 32


def load(config_name: str) -> dict:
    """Read the environment and return the config for ``config_name``.

    :raise SettingsError: unknown config name, a malformed value, or an unsafe ``prd``.
    """
    config = runtime_settings.runtime(config_name)
    config.update(runtime_settings.reading(config_name, lambda env: _read(env, config)))
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
            f"({timeout_s:g} s, so more than {timeout_s * 1000:.0f} ms)"
        )


def _read(env: Env, runtime: dict) -> dict:
    database_url = env.str("DATABASE_URL", f"sqlite:///{RunDir(Path(runtime['RUN_DIR'])).database}")
    return {
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": _engine_options(env, database_url),
        "RATELIMIT_PER_BUYER": env.str(
            "SPILLWAY_RATE_LIMIT_PER_BUYER", "5 per second;60 per minute", validate=rate_limit
        ),
        # A limit per buyer is a limit per account: this is what stops minting accounts.
        "RATELIMIT_SIGNUP": env.str(
            "SPILLWAY_SIGNUP_LIMIT_PER_IP", "5 per minute;50 per day", validate=rate_limit
        ),
        "PURCHASE_TOKEN_TTL_S": env.int("SPILLWAY_PURCHASE_TOKEN_TTL", 120),
        # An outbox entry a worker took and never acknowledged for this long is re-driven.
        "OUTBOX_STUCK_MS": env.int("SPILLWAY_OUTBOX_STUCK_MS", 30_000),
        # How long redis keeps what the ledger holds too: a final order's record, a sale's
        # idempotency keys and holdings after its last payment deadline (sales/archive.py).
        "REDIS_RETENTION_S": env.int(
            "SPILLWAY_REDIS_RETENTION_S", 7 * 24 * 3600, validate=Range(60, 365 * 24 * 3600)
        ),
        # A new sale's stock is split over this many redis keys (sales/stock.py).
        "STOCK_SHARDS": env.int("SPILLWAY_STOCK_SHARDS", 1, validate=Range(1, 64)),
        # A real gateway, else the stand-in `spillway up` runs beside the shop (gateway.py).
        "PAYMENT_URL": env.str(
            "SPILLWAY_PAYMENT_URL",
            f"http://127.0.0.1:{env.int('SPILLWAY_PAYMENT_GATEWAY_PORT', 8099)}",
        ).rstrip("/"),
        # One call to the gateway, connect to last byte (orders/payment.py).
        "GATEWAY_TIMEOUT_S": env.float(
            "SPILLWAY_GATEWAY_TIMEOUT_S", 15.0, validate=Range(min=0.1, max=300)
        ),
        # A payment still 'paying' this long after its order's deadline is resolved with
        # the gateway (void: captured → paid, voided → cancelled); see _check_payment.
        "PAYING_GRACE_MS": env.int(
            "SPILLWAY_PAYING_GRACE_MS", 60_000, validate=Range(min=1, max=86_400_000)
        ),
        # Live stock streams: how often a process reads watched sales, how often an idle
        # stream sends a keep-alive comment (below nginx's proxy_read_timeout).
        "STREAM_POLL_MS": env.int("SPILLWAY_STREAM_POLL_MS", 200),
        "STREAM_HEARTBEAT_S": env.float("SPILLWAY_STREAM_HEARTBEAT_S", 15.0),
        # Requests held open (spillway.security.concurrency): a stream ends after its
        # lifetime and the browser reconnects; caps per worker process, and per client
        # address while rate limits are on. A worker holds 10,000 streams in about 230 MB
        # (bench/sse_fanout.py); keep the cap under its gunicorn worker connections.
        "STREAM_MAX_LIFETIME_S": env.float(
            "SPILLWAY_STREAM_MAX_LIFETIME_S", 600.0, validate=Range(min=1)
        ),
        "STREAMS_PER_WORKER": env.int("SPILLWAY_STREAMS_PER_WORKER", 15_000, validate=Range(min=1)),
        "STREAMS_PER_ADDRESS": env.int("SPILLWAY_STREAMS_PER_ADDRESS", 32, validate=Range(min=1)),
        "DEMO_SLOW_PER_WORKER": env.int(
            "SPILLWAY_DEMO_SLOW_PER_WORKER", 2_000, validate=Range(min=1)
        ),
        "DEMO_SLOW_PER_ADDRESS": env.int(
            "SPILLWAY_DEMO_SLOW_PER_ADDRESS", 20, validate=Range(min=1)
        ),
        "API_TITLE": "Spillway",
        "API_VERSION": "v1",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/api/v1",
        "OPENAPI_JSON_PATH": "openapi.json",
        "CELERY": _celery_settings(env, runtime["BROKER_URL"]),
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
        # Timestamps are stored without a zone and are all UTC (spillway.clock); the
        # session's zone decides how an aware datetime is stored, so it is pinned.
        "connect_args": {
            "connect_timeout": 5,
            "application_name": "spillway",
            "options": "-c timezone=UTC",
        },
    }


def _celery_settings(env: Env, broker_url: str) -> dict:
    # Drains also start on demand (the first reservation into an idle outbox); the
    # schedule is the safety net that makes a lost nudge or a dead web process harmless.
    config = base_config(broker_url, env.int("SPILLWAY_CELERY_VISIBILITY_TIMEOUT", 3600))
    config["beat_schedule"] = {
        "heartbeat": every(
            env.float("SPILLWAY_HEARTBEAT_SECONDS", 10.0), "flashsale.ops.tasks.heartbeat"
        ),
        "drain-outbox": every(1.0, "flashsale.orders.tasks.drain_outbox"),
        "sweep-outbox": every(10.0, "flashsale.orders.tasks.sweep_outbox"),
        "expire-payments": every(1.0, "flashsale.orders.tasks.expire_payments"),
        "reconcile": every(60.0, "flashsale.sales.reconcile.reconcile_sales"),
        "archive-sales": every(600.0, "flashsale.sales.archive.archive_sales"),
    }
    return config


def _refuse_unsafe_production(config: dict) -> None:
    if not config["ADMIN_TOKEN"]:
        raise SettingsError("SPILLWAY_ADMIN_TOKEN is not set: prd needs an admin token")
    weakness = _admin_token_weakness(config["ADMIN_TOKEN"], config["SECRET_KEY"])
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
