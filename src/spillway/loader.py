"""Find the app to run: ``SPILLWAY_APP`` (or ``spillway up --app``), spelled the way gunicorn
and the Flask CLI spell it.

``pkg.module:create_app`` (a factory called with no arguments), ``pkg:create_app("prd")``
(called with those literal arguments), ``pkg:app`` (an app object), or just ``pkg`` (an
``app`` or a ``create_app`` in it). The module is found the way the user's shell finds
it: on ``PYTHONPATH``, or installed in the venv. Flask's own ``locate_app`` does the
finding and the calling.
"""

import os

from flask import Flask
from flask.cli import NoAppException
from flask.cli import locate_app

from spillway.extension import Spillway

# The flagship app, shipped beside the runtime: what `make run` runs when nothing is set.
DEFAULT_APP = "flashsale:create_app"


class AppNotFound(RuntimeError):
    """SPILLWAY_APP names no Flask app that can be imported and made; says why, in a line."""


def app_spec() -> str:
    return os.environ.get("SPILLWAY_APP") or DEFAULT_APP


def load_app(spec: str | None = None) -> Flask:
    """Import and make the app ``spec`` names, bound to the runtime (an app that declared
    nothing gets the runtime's defaults).

    :raise AppNotFound: it cannot be imported or made.
    """
    spec = spec or app_spec()
    module, _, name = spec.partition(":")
    try:
        app = locate_app(module, name or None)
    except NoAppException as exc:
        # Flask's message may carry a whole traceback (an ImportError inside the module):
        # its first line and the cause's last say what to fix.
        lines = [line for line in str(exc).splitlines() if line.strip()]
        cause = f" ({lines[-1].strip()})" if len(lines) > 1 else ""
        raise AppNotFound(f"SPILLWAY_APP={spec}: {lines[0] if lines else exc}{cause}") from None
    Spillway.of(app)
    return app
