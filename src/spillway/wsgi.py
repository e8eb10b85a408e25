"""WSGI entry point for gunicorn: ``gunicorn -k gevent spillway.wsgi:app``.

gunicorn's gevent worker patches before it imports this module; importing gevent_boot
first as well keeps the module safe under any other gevent server. The app is the one
``SPILLWAY_APP`` names (spillway.loader), with the runtime's layers around it; its start
checks run before the worker serves (a refusal fails the worker's boot, in one line), then
the gevent guards: the audit of blocking drivers and the hub monitor (spillway.guards).
"""

from spillway import gevent_boot  # noqa: F401  (must precede every other import)
from spillway.guards import protect_gevent_worker
from spillway.health.start import verify_at_start
from spillway.loader import load_app

app = load_app()
try:
    verify_at_start(app, "gunicorn worker")
    protect_gevent_worker(app, "gunicorn")
except SystemExit:  # its one line is logged: the master stops rather than boot it again
    from gunicorn.arbiter import Arbiter

    raise SystemExit(Arbiter.WORKER_BOOT_ERROR) from None
