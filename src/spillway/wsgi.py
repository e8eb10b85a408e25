"""WSGI entry point for gunicorn: ``gunicorn -k gevent spillway.wsgi:app``.

gunicorn's gevent worker patches before it imports this module; importing gevent_boot
first as well keeps the module safe under any other gevent server. The app is the one
``SPILLWAY_APP`` names (spillway.loader), with the runtime's layers around it; its start
checks run before the worker serves (a refusal fails the worker's boot, in one line).
"""

from spillway import gevent_boot  # noqa: F401  (must precede every other import)
from spillway.health.start import verify_at_start
from spillway.loader import load_app

app = load_app()
verify_at_start(app, "gunicorn worker")
