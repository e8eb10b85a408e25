"""A fast path: a WSGI layer that answers some of an app's requests before Flask's request
machinery, when profiling shows that machinery costs more than the answer's own work.

A subclass says which requests it takes (:meth:`FastPath.match`) and answers them
(:meth:`FastPath.answer`); everything else goes on to the app unchanged. The base class
records the route's label for the metrics (the same rule Flask would have matched, so a
route's latency is one series whichever way it was answered) and gives an exception the
same JSON answer Flask's error handlers would (spillway.errors.response_for). The Flask
view of the same endpoint stays its documented definition, and takes what the fast path
leaves (a chunked body, say).
"""

from flask import Flask

from spillway.errors import response_for
from spillway.metrics.middleware import ROUTE_KEY


class FastPath:
    """Wraps a WSGI app; see the module's docstring."""

    #: The Flask rule of the endpoint this answers for, e.g. "/api/v1/items/<item_id>".
    route = ""

    def __init__(self, app: Flask, wsgi_app):
        self.app = app
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        found = self.match(environ)
        if found is None:
            return self.wsgi_app(environ, start_response)
        environ[ROUTE_KEY] = self.label(found)
        try:
            return self.answer(environ, start_response, found)
        except Exception as exc:  # the same answers Flask's error handlers give
            with self.app.app_context():
                return response_for(exc)(environ, start_response)

    def match(self, environ):
        """What :meth:`answer` needs of a request this path takes (a regex match, say), or
        None to let the app have it."""
        raise NotImplementedError

    def label(self, found) -> str:
        """The metrics' route label of a request this path takes (:attr:`route`)."""
        return self.route

    def answer(self, environ, start_response, found):
        """The WSGI answer; may hand the request on with ``self.wsgi_app``."""
        raise NotImplementedError
