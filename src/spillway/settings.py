"""The runtime's settings, read from the environment in one place.

:func:`runtime` gives the Flask config every app on Spillway runs with (its config name,
debug and log level under the operator's control, the redis and memcached addresses,
rate limits, the proxy hop, metrics); an app's own settings come on top (the flash sale's:
flashsale/settings.py). The deploy settings (nginx's limits, redis's memory) are read by
`spillway up`. A setting that is missing, malformed or unsafe stops the process with one
line that names the environment variable.
"""

import os
import re
from pathlib import Path

from environs import Env
from environs import EnvError
from marshmallow import ValidationError
from marshmallow.validate import OneOf
from marshmallow.validate import Range

from spillway.redis_durability import POLICIES as DURABILITY_POLICIES
from spillway.redis_location import sentinel_address

CONFIG_NAMES = ("dev", "test", "prd")
MAX_BODY_BYTES = 64 * 1024
# Values a tutorial or a template would leave behind; none of them is a secret.
DEFAULT_SECRETS = {"", "dev", "secret", "changeme", "change-me", "dev-insecure-key"}
MIN_SECRET_LENGTH = 16


class SettingsError(RuntimeError):
    """A setting is missing or unsafe; the message names the variable."""


def config_name_from_environment(default: str = "dev") -> str:
    """SPILLWAY_ENV (``dev``, ``test``, ``prd``); `spillway up` runs ``prd``."""
    return os.environ.get("SPILLWAY_ENV", default)


def reading(config_name: str, read) -> dict:
    """``read(env)`` for ``config_name``, with every environs error as one SettingsError.

    :raise SettingsError: an unknown config name, or a malformed value.
    """
    if config_name not in CONFIG_NAMES:
        raise SettingsError(
            f"unknown config {config_name!r}: choose one of {', '.join(CONFIG_NAMES)}"
        )
    try:
        return read(Env())
    except EnvError as exc:
        raise SettingsError(str(exc)) from None


def runtime(config_name: str) -> dict:
    """The runtime's config for ``config_name``.

    :raise SettingsError: a malformed value, or an unsafe ``prd``.
    """
    config = reading(config_name, lambda env: _read(env, config_name))
    if config_name == "prd":
        _refuse_unsafe_production(config)
    return config


def _read(env: Env, config_name: str) -> dict:
    # A redis URL, or redis+sentinel://host:port,.../master[/db] (spillway/redis_location.py).
    redis_url = env.str("SPILLWAY_REDIS_URL", "redis://127.0.0.1:6379/0", validate=_redis_url)
    return {
        "ENV_NAME": config_name,
        "DEBUG": env.bool("SPILLWAY_DEBUG", config_name == "dev"),
        "TESTING": config_name == "test",
        "LOG_LEVEL": env.log_level("SPILLWAY_LOG_LEVEL", "INFO"),
        "LOG_FORMAT": _log_format(env),
        "SECRET_KEY": env.str("SPILLWAY_SECRET_KEY", "dev-insecure-key"),
        # Opens the runtime's own admin views (the reasons behind /readyz, Flower).
        "ADMIN_TOKEN": env.str("SPILLWAY_ADMIN_TOKEN", ""),
        "RUN_DIR": str(Path(env.str("SPILLWAY_RUN_DIR", "run")).resolve()),
        "RATE_LIMITS_ENABLED": env.str("SPILLWAY_RATE_LIMITS", "on").lower() != "off",
        # `off` drops the request-latency middleware (to measure what it costs).
        "METRICS_ENABLED": env.str("SPILLWAY_METRICS", "on").lower() != "off",
        **_rate_limit_settings(env, redis_url),
        # nginx is the one proxy in front of the app: trust that many X-Forwarded-For hops
        # (0 when clients reach `spillway serve` directly, or they could pick their address).
        "PROXY_HOPS": env.int("SPILLWAY_PROXY_HOPS", 1),
        "REDIS_URL": redis_url,
        "BROKER_URL": env.str("SPILLWAY_BROKER_URL", redis_url, validate=_redis_url),
        # `off` sends each command on its own (spillway/redis_batch.py).
        "REDIS_BATCHING": env.str("SPILLWAY_REDIS_BATCHING", "on").lower() != "off",
        **_durability_settings(env),
        "MEMCACHED_SERVERS": env.list("SPILLWAY_MEMCACHED_SERVERS", ["127.0.0.1:11211"]),
        # /readyz reuses a process's last checks this long: a flood costs one run a second.
        "READYZ_CACHE_S": env.float("SPILLWAY_READYZ_CACHE_S", 1.0, validate=Range(0, 60)),
        "MAX_CONTENT_LENGTH": MAX_BODY_BYTES,
        **_guard_settings(env),
    }


def _redis_url(value: str) -> None:
    try:
        sentinel_address(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


def _durability_settings(env: Env) -> dict:
    # What a promised write waits for before its reply counts (spillway/redis_durability.py).
    return {
        "REDIS_DURABILITY": env.str(
            "SPILLWAY_REDIS_DURABILITY", "none", validate=OneOf(DURABILITY_POLICIES)
        ),
        "REDIS_DURABILITY_REPLICAS": env.int("SPILLWAY_REDIS_REPLICAS", 1, validate=Range(1, 16)),
        # Below the redis client's 2 s socket timeout: a wait that times out is an answer
        # (a 503), a read that times out drops the connection.
        "REDIS_DURABILITY_TIMEOUT_MS": env.int(
            "SPILLWAY_REDIS_DURABILITY_TIMEOUT_MS", 200, validate=Range(1, 1500)
        ),
    }


def _guard_settings(env: Env) -> dict:
    # The guards of a gevent stack (spillway/guards/, docs/guards.md).
    return {
        # A request's greenlet ends after this (503): a little under nginx's
        # proxy_read_timeout (90 s), so the client hears our answer, not nginx's 504.
        "REQUEST_TIMEOUT_S": env.float(
            "SPILLWAY_REQUEST_TIMEOUT_S", 85.0, validate=Range(0.01, 86400)
        ),
        # gevent's monitor thread: a hub that runs no other greenlet this long is blocked.
        "HUB_MONITOR": env.str("SPILLWAY_HUB_MONITOR", "on").lower() != "off",
        "MAX_BLOCKING_MS": env.int("SPILLWAY_MAX_BLOCKING_MS", 100, validate=Range(5, 60_000)),
        # Each Celery worker pings itself through the broker this often, and exits (to be
        # restarted) when its pings go unconsumed this long while it has a free slot.
        "WORKER_PING_S": env.float("SPILLWAY_WORKER_PING_S", 5.0, validate=Range(0.1, 3600)),
        "WORKER_STALL_S": env.float("SPILLWAY_WORKER_STALL_S", 30.0, validate=Range(0.5, 86400)),
    }


def _rate_limit_settings(env: Env, redis_url: str) -> dict:
    # Flask-Limiter's own settings (RATELIMIT_*): counters in the app's redis, fixed windows
    # (one round trip a hit). A redis that is down must not take reads down with it: the
    # limiter then lets requests through, and whatever needs redis answers 503 by itself.
    uri, options = _limits_storage(redis_url)
    return {
        "RATELIMIT_ENABLED": env.str("SPILLWAY_RATE_LIMITS", "on").lower() != "off",
        "RATELIMIT_STORAGE_URI": uri,
        "RATELIMIT_STORAGE_OPTIONS": {
            "socket_timeout": 2.0,
            "socket_connect_timeout": 1.0,
            **options,
        },
        "RATELIMIT_STRATEGY": "fixed-window",
        "RATELIMIT_KEY_PREFIX": "spillway",
        "RATELIMIT_SWALLOW_ERRORS": True,
        "RATELIMIT_HEADERS_ENABLED": False,
        "RATELIMIT_DEFAULT": env.str(
            "SPILLWAY_RATE_LIMIT_PER_IP", "20 per second;600 per minute", validate=rate_limit
        ),
    }


def _limits_storage(redis_url: str) -> tuple[str, dict]:
    """The same redis in ``limits``'s spelling: redis+unix:// for a socket (redis-py's
    unix://), and the Sentinels' URL without the database in its path."""
    sentinels = sentinel_address(redis_url)
    if sentinels:
        return sentinels.limits_storage()
    if redis_url.startswith("unix://"):
        return redis_url.replace("unix://", "redis+unix://", 1), {}
    return redis_url, {}


def rate_limit(value: str) -> None:
    """Flask-Limiter's syntax, e.g. "5 per second;60 per minute" (an environs validator)."""
    from limits import parse_many

    try:
        parse_many(value)
    except ValueError:
        raise ValidationError(f"not a rate limit such as '5 per second': {value!r}") from None


def _refuse_unsafe_production(config: dict) -> None:
    if config["DEBUG"] or os.environ.get("FLASK_DEBUG", "").lower() in {"1", "true", "yes"}:
        raise SettingsError("SPILLWAY_DEBUG (or FLASK_DEBUG) must be off in prd")
    secret = config["SECRET_KEY"]
    if secret.lower() in DEFAULT_SECRETS or len(secret) < MIN_SECRET_LENGTH:
        raise SettingsError(
            f"SPILLWAY_SECRET_KEY is missing or a default: set a random value of "
            f"{MIN_SECRET_LENGTH}+ characters for prd"
        )


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
            "nginx_rate_per_ip": env.str(
                "SPILLWAY_NGINX_RATE_PER_IP", "20r/s", validate=_nginx_rate
            ),
            "nginx_burst_per_ip": env.int("SPILLWAY_NGINX_BURST_PER_IP", 40),
            # Requests in progress at once per address (limit_conn): a held stream or a
            # slow upload is one each; a browser opens about six.
            "nginx_conn_per_ip": env.int(
                "SPILLWAY_NGINX_CONN_PER_IP", 64, validate=Range(1, 1_000_000)
            ),
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


LOG_FORMATS = ("text", "json")


def _log_format(env: Env) -> str:
    return env.str("SPILLWAY_LOG_FORMAT", "text", validate=OneOf(LOG_FORMATS))


def log_format() -> str:
    """SPILLWAY_LOG_FORMAT (``text`` or ``json``: one object per line), for the processes
    that read it before any app exists: gunicorn's master, and `spillway up` for nginx.

    :raise SettingsError: neither.
    """
    try:
        return _log_format(Env())
    except EnvError as exc:
        raise SettingsError(str(exc)) from None


def _supervisor_size(value: str) -> None:
    if not re.fullmatch(r"[1-9][0-9]*(KB|MB|GB)?", value):
        raise ValidationError(f"not a size such as '50MB' or '512KB': {value!r}")


def log_rotation() -> dict:
    """When supervisord rotates each program's log, for `spillway up` to render: past
    SPILLWAY_LOG_MAX_BYTES (50MB), keeping SPILLWAY_LOG_BACKUPS older files (3).

    :raise SettingsError: a malformed value.
    """
    env = Env()
    try:
        return {
            "max_bytes": env.str("SPILLWAY_LOG_MAX_BYTES", "50MB", validate=_supervisor_size),
            "backups": env.int("SPILLWAY_LOG_BACKUPS", 3, validate=Range(1, 1000)),
        }
    except EnvError as exc:
        raise SettingsError(str(exc)) from None
