"""Readiness probes: one short check per dependency, each reporting "ok" or why not."""

import logging

from flask import current_app
from pymemcache.client.base import Client
from sqlalchemy import text

from spillway.extensions import db
from spillway.extensions import redis_store

log = logging.getLogger(__name__)

BROKER_TIMEOUT_SECONDS = 1.0


def check_database() -> None:
    db.session.execute(text("SELECT 1"))
    db.session.rollback()


def check_redis() -> None:
    redis_store.ping()


def check_memcached() -> None:
    # A fresh connection per server: the pool's own client may be holding a server as
    # "dead" for a while, and a probe must report what is true now.
    for server in current_app.config["MEMCACHED_SERVERS"]:
        client = Client(server, connect_timeout=0.5, timeout=0.5)
        try:
            client.version()
        finally:
            client.close()


def check_broker() -> None:
    with current_app.extensions["celery"].connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)


CHECKS = {
    "database": check_database,
    "redis": check_redis,
    "memcached": check_memcached,
    "broker": check_broker,
}


def run_checks() -> dict[str, str]:
    """Run every check; map each dependency to "ok" or a one-line reason."""
    results = {}
    for name, check in CHECKS.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:  # a probe reports failure, it never raises
            log.warning("readiness: %s failed: %s", name, exc)
            results[name] = f"error: {type(exc).__name__}: {exc}"[:200]
    return results
