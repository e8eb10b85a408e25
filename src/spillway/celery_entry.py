"""Entry point of the Celery worker and beat: ``celery -A spillway.celery_entry worker``.

The Celery app is the one the app declares (``app.extensions["celery"]``, or
``Spillway(app, celery=...)``) of the app ``SPILLWAY_APP`` names. Workers use the prefork
pool, so this module deliberately does not monkey-patch. Each worker pings itself through
the broker and exits when it stops consuming (spillway.guards.worker_liveness).
"""

from celery.signals import worker_process_init

from spillway.extension import Spillway
from spillway.guards import worker_liveness
from spillway.health.start import verify_at_start
from spillway.loader import load_app

flask_app = load_app()
celery_app = Spillway.of(flask_app).celery
if celery_app is None:
    raise SystemExit(f"celery: the app {flask_app.import_name!r} has no Celery app "
                     "(app.extensions['celery'])")
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
