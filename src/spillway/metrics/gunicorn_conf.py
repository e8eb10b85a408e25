"""gunicorn server hooks (``--config python:spillway.metrics.gunicorn_conf``).

Loaded by the master, which never serves and is not patched for gevent: prometheus_client
is imported only when a worker has exited, never before the first workers fork. Workers
forked after that inherit the module, and its lock is a plain thread lock; that is safe
because no greenlet switch can happen while it is held (it guards a few mmap writes).
Its logger class (gunicorn's own, already imported there) formats gunicorn's lines as the
app's (spillway.logs).
"""

from gunicorn.glogging import Logger


def child_exit(server, worker):
    """A worker exited: drop its live gauges from the shared metrics directory (its counters
    and histograms stay, so that totals never go backwards)."""
    from spillway.metrics.registry import multiprocess_dir

    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def worker_abort(worker):
    """gunicorn is killing a worker that stopped answering (--timeout): log the block that
    held its hub, if the monitor caught one (spillway.guards.hub_monitor)."""
    from spillway.guards import hub_monitor

    hub_monitor.flush_pending("gunicorn aborted the worker")


class SpillwayLogger(Logger):
    """gunicorn's own lines (its error log) in the app's text format (spillway.logs). The
    format is chosen by class, not read here: spillway.settings imports the redis client,
    and with it ssl, which must not be imported before the workers patch for gevent."""

    log_format = "text"

    def setup(self, cfg):
        super().setup(cfg)
        from spillway import logs

        logs.adopt(self.error_log, self.log_format)
        logs.adopt(self.access_log, self.log_format)


class JsonLogger(SpillwayLogger):
    """The same as JSON lines: `spillway up` names it (--logger-class) when
    SPILLWAY_LOG_FORMAT=json."""

    log_format = "json"


logger_class = SpillwayLogger
