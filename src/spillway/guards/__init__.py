"""The guards a gevent stack needs in production, for any app on the runtime
(docs/guards.md):

- ``hub_monitor``: a greenlet that blocks the hub (a C call that does not yield, a busy
  loop) is a metric and one log line with its stack;
- ``startup_audit``: a gevent worker refuses to start with a known blocking driver
  imported unpatched (psycopg2 without psycogreen, pylibmc, mysqlclient);
- ``deadline``: a request's greenlet ends at ``SPILLWAY_REQUEST_TIMEOUT_S`` with a 503,
  never inside a ``shielded()`` block;
- ``worker_liveness``: each Celery worker pings itself through the broker, and exits to be
  restarted when its pings go unconsumed;
- beat without a single point of failure: celery-redbeat's redis lock
  (spillway.celery_app.base_config).

:func:`protect_gevent_worker` is what a gevent process runs once its app is loaded
(spillway.wsgi under gunicorn, spillway.serve).
"""

from flask import Flask


def protect_gevent_worker(app: Flask, server: str) -> None:
    """Audit the imported drivers (exit in one line on a blocking one), then watch the hub.

    :param server: what serves, for the log and the metrics' label ("gunicorn", "serve").
    :raise SystemExit: a known blocking driver is imported unpatched.
    """
    from spillway.guards import hub_monitor
    from spillway.guards import startup_audit

    startup_audit.refuse_blocking_drivers(f"{server} worker")
    if app.config["HUB_MONITOR"]:
        hub_monitor.start(app.config["MAX_BLOCKING_MS"] / 1000, server)
