"""The shop's pages, for `spillway serve` without nginx in front (nginx serves the same
files straight from disk): the storefront, the API docs page, the operator page."""

from flask import Blueprint
from flask import current_app

bp = Blueprint("pages", __name__)


@bp.get("/")
def index():
    """Serve the storefront page."""
    return current_app.send_static_file("index.html")


@bp.get("/docs")
def docs():
    """Serve the page that renders the OpenAPI document."""
    return current_app.send_static_file("docs.html")


@bp.get("/ops")
def ops_page():
    """Serve the operator page (its data needs the admin token)."""
    return current_app.send_static_file("ops.html")
