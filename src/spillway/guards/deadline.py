"""The request deadline: a request's greenlet ends after ``SPILLWAY_REQUEST_TIMEOUT_S``
(a little under nginx's proxy_read_timeout of 90 s) and is answered ``503`` JSON with
``Retry-After``. gunicorn's ``--timeout`` bounds a worker's heartbeat, never a greenlet
(gunicorn #1955, #2695, #2964; gevent #1949): without this a request runs on long after the
client and nginx gave up, holding its connection, its locks and its pool slots.

- The deadline is a ``gevent.Timeout`` around the app's WSGI call, raising
  :class:`DeadlineExceeded` — a ``BaseException``, so neither ``except Exception`` nor
  ``except gevent.Timeout`` in the app swallows it — at the greenlet's next yield.
- A view sets its own with :func:`deadline` (``None``: none at all).
- A streamed body (server-sent events) is iterated after the WSGI call returns: it is
  never under the deadline.
- **Nothing half-done**: inside :func:`shielded` the deadline is deferred. A greenlet
  ended while it waits for a reply may still have its command run (an auto-pipelined
  EVALSHA already queued, spillway.redis_batch): the work either is not started or is
  finished and answered. A deadline that passed inside the block fires
  :data:`ANSWER_GRACE_S` after it ends — time enough to answer what the block did, never
  a request that runs on.

Only a process patched by gevent arms deadlines (elsewhere a Timeout could not interrupt
a blocking call anyway): gunicorn's gevent workers and `spillway serve`.
"""

import contextlib
import contextvars
import json
import logging
import sys
import time
from collections.abc import Callable

import gevent
from gevent import monkey

from spillway.metrics import registry
from spillway.metrics.middleware import ROUTE_KEY
from spillway.metrics.middleware import UNMATCHED

log = logging.getLogger(__name__)

ENVIRON_KEY = "spillway.deadline"
VIEW_ATTRIBUTE = "spillway_deadline_s"
# After a shielded block that outlived the deadline: enough to build and send the answer.
ANSWER_GRACE_S = 2.0
RETRY_AFTER_SECONDS = 1
_current: contextvars.ContextVar = contextvars.ContextVar("spillway_deadline", default=None)


class DeadlineExceeded(BaseException):
    """Raised into a request's greenlet when its deadline passes (see the module)."""


class RequestDeadline:
    """One request's deadline: a timer on its greenlet, moved by a view, held off by
    :func:`shielded`."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds  # from the request's start; None: no deadline
        self.started = time.monotonic()
        self.timer: gevent.Timeout | None = None
        self.shields = 0

    def remaining(self) -> float | None:
        if self.seconds is None:
            return None
        return self.seconds - (time.monotonic() - self.started)

    def arm(self, seconds: float | None) -> None:
        """(Re)start the timer to fire in ``seconds`` (None: not at all)."""
        self.cancel()
        if seconds is not None:
            self.timer = gevent.Timeout(max(seconds, 0), DeadlineExceeded(self.seconds))
            self.timer.start()

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def move_to(self, seconds: float | None) -> None:
        """The view's own deadline, from the request's start."""
        self.seconds = seconds
        if not self.shields:
            self.arm(self.remaining())

    def shield(self) -> None:
        if not self.shields:
            self.cancel()
        self.shields += 1

    def unshield(self) -> None:
        self.shields -= 1
        if not self.shields:
            remaining = self.remaining()
            late = remaining is not None and remaining <= 0
            self.arm(ANSWER_GRACE_S if late else remaining)


def applies() -> bool:
    """Whether this process arms deadlines (it is patched by gevent)."""
    return monkey.is_module_patched("socket")


def deadline(seconds: float | None) -> Callable:
    """A view's own deadline in seconds, instead of ``SPILLWAY_REQUEST_TIMEOUT_S``; ``None``
    exempts it. Put it under the route decorator::

        @bp.get("/report")
        @deadline(300)
        def report(): ...
    """

    def decorate(view: Callable) -> Callable:
        setattr(view, VIEW_ATTRIBUTE, seconds)  # functools.wraps carries it to wrappers
        return view

    return decorate


@contextlib.contextmanager
def shielded():
    """Defer the current request's deadline while inside (no-op outside a request): for
    work that must not be ended halfway, e.g. a write whose reply is awaited."""
    current = _current.get()
    if current is None:
        yield
        return
    current.shield()
    try:
        yield
    finally:
        current.unshield()


def apply_view_deadline(environ: dict, view: Callable | None) -> None:
    """Move the request's deadline to the matched view's own, if it declares one (called
    by a before-request hook, once Flask has routed the request)."""
    current = environ.get(ENVIRON_KEY)
    if current is not None and view is not None and hasattr(view, VIEW_ATTRIBUTE):
        current.move_to(getattr(view, VIEW_ATTRIBUTE))


class DeadlineMiddleware:
    """Wraps a WSGI app: each call under its deadline, a 503 when it passes."""

    def __init__(self, wsgi_app, seconds: float):
        self.wsgi_app = wsgi_app
        self.seconds = seconds

    def __call__(self, environ, start_response):
        current = RequestDeadline(self.seconds)
        environ[ENVIRON_KEY] = current
        token = _current.set(current)
        current.arm(self.seconds)
        try:
            return self.wsgi_app(environ, start_response)
        except DeadlineExceeded:
            return self.answer(environ, start_response, current.seconds)
        finally:
            current.cancel()
            _current.reset(token)

    def answer(self, environ, start_response, seconds: float):
        route = environ.get(ROUTE_KEY, UNMATCHED)
        registry.REQUEST_DEADLINES.labels(route).inc()
        log.warning(
            "%s %s passed its %g s deadline: its greenlet was ended, answered 503",
            environ.get("REQUEST_METHOD"),
            route,
            seconds,
        )
        body = json.dumps(
            {
                "error": {
                    "code": "unavailable",
                    "message": (
                        f"The request did not finish within its {seconds:g} s deadline; try again."
                    ),
                }
            }
        )
        start_response(
            "503 SERVICE UNAVAILABLE",
            [
                ("Content-Type", "application/json"),
                ("Retry-After", str(RETRY_AFTER_SECONDS)),
                ("Content-Length", str(len(body))),
            ],
            sys.exc_info(),
        )
        return [body.encode()]
