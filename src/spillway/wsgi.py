"""WSGI entry point for gunicorn: ``gunicorn -k gevent spillway.wsgi:app``.

gunicorn's gevent worker patches before it imports this module; importing gevent_boot
first as well keeps the module safe under any other gevent server.
"""

from spillway import gevent_boot  # noqa: F401  (must precede every other import)

import os

from spillway import create_app
from spillway.sales.binding import verify_at_start

app = create_app(os.environ.get("SPILLWAY_ENV", "prd"))
# A worker never serves redis state that belongs to another ledger (RELIABILITY.md).
verify_at_start(app, "gunicorn worker")
