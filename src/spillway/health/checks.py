"""Readiness probes: one short check per dependency, each reporting "ok" or why not.

The runtime checks what it runs — redis, memcached, and the broker when the app has a
Celery app — and an app adds its own (``Spillway(app, readiness={"database": ...})``).

``/readyz`` is public and exempt from rate limits (load balancers must never be locked
out), so what it costs is bounded here instead: each process reuses its last result for
``READYZ_CACHE_S`` (1 s) and runs the checks for one caller at a time while the others
wait for that result. A flood of probes costs one run of the checks a second per process,
and a dependency that dies shows within about a second.
"""

import logging
import math
import threading
import time

from flask import Flask
from flask import current_app
from pymemcache.client.base import Client

from spillway.clients import redis_store
from spillway.failures import one_line
from spillway.guards import worker_liveness

log = logging.getLogger(__name__)

BROKER_TIMEOUT_SECONDS = 1.0


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
    """The broker answers, and its workers consume: some worker's ping went through lately,
    or no worker is known (spillway.guards.worker_liveness)."""
    with current_app.extensions["spillway"].celery.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)
    worker_liveness.check_consumers(redis_store.client, current_app.config["WORKER_STALL_S"])


def checks_of(app: Flask) -> dict:
    """The app's declared checks first, then the runtime's (the broker only with Celery)."""
    spec = app.extensions["spillway"]  # bound by Spillway.init_app, which serves it
    checks = {**spec.readiness, "redis": check_redis, "memcached": check_memcached}
    if spec.celery is not None:
        checks["broker"] = check_broker
    return checks


def run_checks() -> dict[str, str]:
    """Run every check of the current app; map each to "ok" or a one-line reason (the
    setting and the cause, for a dependency's failure)."""
    results = {}
    for name, check in checks_of(current_app).items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:  # a probe reports failure, it never raises
            reason = one_line(exc, current_app.config)
            log.warning("readiness: %s failed: %s", name, reason)
            results[name] = f"error: {reason}"[:200]
    return results


class ReadinessCache:
    """This process's last readiness results, reused while younger than ``max_age_s``."""

    def __init__(self, max_age_s: float):
        self.max_age_s = max_age_s
        self._lock = threading.Lock()  # gevent's under gevent: a waiting probe yields
        self._results: dict[str, str] = {}
        self._checked_at = -math.inf

    def results(self) -> dict[str, str]:
        """The cached results, or fresh ones (one caller runs the checks, the rest wait)."""
        if not self._fresh():
            with self._lock:
                if not self._fresh():  # nobody refreshed them while this caller waited
                    self._results = run_checks()
                    self._checked_at = time.monotonic()
        return self._results

    def _fresh(self) -> bool:
        return time.monotonic() - self._checked_at < self.max_age_s


def cached_checks(app: Flask) -> dict[str, str]:
    """:func:`run_checks`, at most once per ``READYZ_CACHE_S`` in this process."""
    cache = app.extensions.get("readiness")
    if cache is None:
        cache = app.extensions.setdefault("readiness", ReadinessCache(app.config["READYZ_CACHE_S"]))
    return cache.results()


def public_view(results: dict[str, str]) -> dict[str, str]:
    """Each dependency "ok" or "unavailable": why is for the log, the admin and the CLI."""
    return {name: "ok" if result == "ok" else "unavailable" for name, result in results.items()}
