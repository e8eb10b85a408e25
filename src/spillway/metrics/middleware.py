"""The outermost WSGI middleware: one latency observation per request, by route template.

It wraps the whole app, the purchase and catalog fast paths included, so every answer is
measured the same way. The label is the Flask rule that matched (recorded by a
before-request hook that runs first), or, for an answer a fast path gave before Flask, the
rule Flask would have matched; anything else is "unmatched", so random paths cannot grow
the number of series.
"""

import time

from flask import Flask
from flask import request

from spillway.catalog.fastpath import LISTING_PATH
from spillway.catalog.fastpath import PRODUCT_PATH
from spillway.metrics import registry
from spillway.sales.fastpath import PURCHASE_PATH

ROUTE_KEY = "spillway.route"
UNMATCHED = "unmatched"
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


class RequestMetricsMiddleware:
    """Wraps ``app.wsgi_app``; must be installed after every other middleware."""

    def __init__(self, app: Flask, wsgi_app):
        self.wsgi_app = wsgi_app
        adapter = app.url_map.bind("localhost")
        # The fast paths answer requests Flask never routes: label them with Flask's rule.
        self.purchase_route = adapter.match("/api/v1/sales/1/orders", "POST",
                                            return_rule=True)[0].rule
        self.product_route = adapter.match("/api/v1/products/1", "GET", return_rule=True)[0].rule
        self.listing_route = adapter.match(LISTING_PATH, "GET", return_rule=True)[0].rule

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
            registry.observe_request(method if method in METHODS else "other",
                                     self._route(environ, status), status,
                                     time.perf_counter() - started)

    def _route(self, environ, status: str) -> str:
        route = environ.get(ROUTE_KEY)
        if route is not None:  # Flask routed it
            return route
        path = environ.get("PATH_INFO", "")
        if PURCHASE_PATH.match(path):
            return self.purchase_route
        route = (self.product_route if PRODUCT_PATH.match(path)
                 else self.listing_route if path == LISTING_PATH else None)
        if route is None:
            return UNMATCHED
        if status == "200":  # the catalog fast path answers only from memcached
            registry.cache_lookup("memcached", "catalog-pages", hit=True)
        return route


def remember_route():
    """Before every other hook: note the matched rule where the middleware will look."""
    rule = request.url_rule
    request.environ[ROUTE_KEY] = rule.rule if rule is not None else UNMATCHED


def init_app(app: Flask) -> None:
    """Record the route of every request Flask handles, and put the middleware outermost."""
    app.before_request_funcs.setdefault(None, []).insert(0, remember_route)
    app.wsgi_app = RequestMetricsMiddleware(app, app.wsgi_app)
