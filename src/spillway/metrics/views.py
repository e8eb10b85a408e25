"""``GET /metrics`` (Prometheus text format) and the operator page for the dev server.

nginx serves /metrics only on its loopback metrics listener; its public server answers
404 itself and marks what it forwards with ``X-Spillway-Public``, which this view refuses
too, should some spelling of the path ever slip past nginx's match.
"""

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import request
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client import REGISTRY
from prometheus_client import CollectorRegistry
from prometheus_client import generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from spillway.errors import ApiError
from spillway.metrics.collectors import QueueCollector
from spillway.metrics.registry import multiprocess_dir

PUBLIC_MARK = "X-Spillway-Public"

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics():
    """Expose every process's metrics, summed, and the queue's, read from redis now."""
    if request.headers.get(PUBLIC_MARK):
        raise ApiError(404, "No such resource.")
    shared = CollectorRegistry()
    shared.register(QueueCollector(current_app.extensions["redis"]))
    if multiprocess_dir():
        processes = CollectorRegistry()
        MultiProcessCollector(processes)
    else:
        processes = REGISTRY
    body = generate_latest(processes) + generate_latest(shared)
    return Response(body, mimetype=None, content_type=CONTENT_TYPE_LATEST)


@bp.get("/ops")
def ops_page():
    """Serve the operator page (nginx serves the same file straight from disk)."""
    return current_app.send_static_file("ops.html")
