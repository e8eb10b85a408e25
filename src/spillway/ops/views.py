"""Liveness and readiness endpoints for load balancers and supervisors."""

from flask import Blueprint
from flask import current_app
from flask import jsonify

from spillway.errors import RETRY_AFTER_SECONDS
from spillway.ops.checks import run_checks

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
    """Check every dependency; 503 if any is down."""
    checks = run_checks()
    ready = all(result == "ok" for result in checks.values())
    response = jsonify(status="ok" if ready else "unavailable", checks=checks)
    if not ready:
        response.status_code = 503
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
