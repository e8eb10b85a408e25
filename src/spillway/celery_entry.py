"""Entry point of the Celery worker and beat: ``celery -A spillway.make_celery worker``.

Workers use the prefork pool, so this module deliberately does not monkey-patch.
"""

import os

from celery.signals import worker_process_init

from spillway import create_app
from spillway.extensions import db
from spillway.sales.binding import verify_at_start

flask_app = create_app(os.environ.get("SPILLWAY_ENV", "prd"))
celery_app = flask_app.extensions["celery"]
# Nothing drains or settles redis state that belongs to another ledger (RELIABILITY.md).
verify_at_start(flask_app, "celery")


@worker_process_init.connect
def _own_database_connections(**_):
    """A forked pool process opens its own database connections: a socket shared with
    the parent would interleave two processes' queries. ``close=False`` leaves the
    parent's connections alone (SQLAlchemy's recipe for pools across fork); redis-py's
    pool notices the new pid by itself."""
    with flask_app.app_context():
        db.engine.dispose(close=False)
