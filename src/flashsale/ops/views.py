"""Liveness and readiness endpoints for load balancers and supervisors."""

from flask import Blueprint
from flask import current_app
from flask import jsonify

from spillway.auth import is_admin
from spillway.errors import RETRY_AFTER_SECONDS
from spillway.ops.checks import cached_checks
from spillway.ops.checks import public_view

bp = Blueprint("ops", __name__)


@bp.get("/")
def index():
    """Serve the storefront page (nginx serves the same file straight from disk)."""
    return current_app.send_static_file("index.html")


@bp.get("/docs")
def docs():
    """Serve the page that renders the OpenAPI document."""
    return current_app.send_static_file("docs.html")


@bp.get("/healthz")
def healthz():
    """Say the process serves; touches no dependency."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """Say whether every dependency is up; 503 if one is not. Why one is down is told to
    the admin token only (and to the log and `spillway check`)."""
    checks = cached_checks(current_app)
    ready = all(result == "ok" for result in checks.values())
    response = jsonify(status="ok" if ready else "unavailable",
                       checks=checks if is_admin() else public_view(checks))
    if not ready:
        response.status_code = 503
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
