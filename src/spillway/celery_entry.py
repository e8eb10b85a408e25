"""Entry point of the Celery worker and beat: ``celery -A spillway.celery_entry worker``.

The Celery app is the one the app declares (``app.extensions["celery"]``, or
``Spillway(app, celery=...)``) of the app ``SPILLWAY_APP`` names. Workers use the prefork
pool, so this module deliberately does not monkey-patch. Each worker pings itself through
the broker and exits when it stops consuming (spillway.guards.worker_liveness); beat is
celery-redbeat, one leader among the beats of every host (spillway.celery_app).
"""

import logging

from celery.signals import beat_init
from celery.signals import worker_process_init

from spillway.extension import Spillway
from spillway.guards import worker_liveness
from spillway.health.start import verify_at_start
from spillway.loader import load_app

log = logging.getLogger(__name__)

flask_app = load_app()
celery_app = Spillway.of(flask_app).celery
if celery_app is None:
    raise SystemExit(
        f"celery: the app {flask_app.import_name!r} has no Celery app (app.extensions['celery'])"
    )
# Nothing runs on state the app's start checks refuse (RELIABILITY.md, the ledger binding).
verify_at_start(flask_app, "celery")
worker_liveness.install(celery_app, flask_app)


@worker_process_init.connect
def _own_database_connections(**_):
    """A forked pool process opens its own database connections: a socket shared with
    the parent would interleave two processes' queries. ``close=False`` leaves the
    parent's connections alone (SQLAlchemy's recipe for pools across fork); redis-py's
    pool notices the new pid by itself. Any Flask-SQLAlchemy engine of the app."""
    database = flask_app.extensions.get("sqlalchemy")
    if database is not None:
        with flask_app.app_context():
            database.engine.dispose(close=False)


@beat_init.connect
def _say_that_beat_waits_for_the_lock(sender=None, **_):
    """redbeat's own beat_init hook, connected after this one, blocks on the leader lock
    without a word while another beat holds it: say so first."""
    lock_key = getattr(sender.scheduler, "lock_key", None)
    if lock_key:
        log.info(
            "beat: taking the leader lock %s, or waiting here while another beat holds it", lock_key
        )
