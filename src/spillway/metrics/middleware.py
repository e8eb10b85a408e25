"""One latency observation per request, by route template, around everything the app
answers (its fast paths included), so every answer is measured the same way.

The label is what the request's environ says under :data:`ROUTE_KEY`: the Flask rule that
matched (recorded by a before-request hook that runs first), or what a fast path answering
before Flask put there (spillway.fastpath); anything else is "unmatched", so random paths
cannot grow the number of series.
"""

import time

from flask import request

from spillway.metrics import registry

ROUTE_KEY = "spillway.route"
UNMATCHED = "unmatched"
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


class RequestMetricsMiddleware:
    """Wraps a WSGI app (spillway.pipeline puts it around the app's own layers)."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        status = "000"

        def recording_start_response(status_line, headers, exc_info=None):
            nonlocal status
            status = status_line[:3]
            return start_response(status_line, headers, exc_info)

        try:
            # Streaming bodies (SSE) are not waited for: this is the time to the answer's start.
            return self.wsgi_app(environ, recording_start_response)
        except BaseException:
            status = "500"
            raise
        finally:
            method = environ.get("REQUEST_METHOD", "")
            registry.observe_request(
                method if method in METHODS else "other",
                environ.get(ROUTE_KEY, UNMATCHED),
                status,
                time.perf_counter() - started,
            )


def remember_route():
    """Before every other hook: note the matched rule where the middleware will look."""
    rule = request.url_rule
    request.environ[ROUTE_KEY] = rule.rule if rule is not None else UNMATCHED
