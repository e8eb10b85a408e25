"""WSGI entry point for gunicorn: ``gunicorn -k gevent spillway.wsgi:app``.

gunicorn's gevent worker patches before it imports this module; importing gevent_boot
first as well keeps the module safe under any other gevent server.
"""

from spillway import gevent_boot  # noqa: F401  (must precede every other import)

import os

from spillway import create_app

app = create_app(os.environ.get("SPILLWAY_ENV", "prd"))
