"""The request id: one name for a request in nginx's access line, the app's log lines, the
answer's ``X-Request-ID`` header and the Celery tasks it sends.

nginx chooses it (the client's ``X-Request-ID`` when it is :data:`VALID`, else its own
``$request_id``) and passes it upstream; :class:`RequestIdMiddleware` believes only a valid
one and makes one when there is none (`spillway serve`, a client straight at gunicorn).
It lives in a context variable for the request's duration (each greenlet and thread has
its own), where :func:`current` reads it: the log filter (spillway.logs), ``flask.g``, and
the Celery signals below, which carry it in a message header to the task's log lines.
"""

import contextvars
import re
import uuid

HEADER = "X-Request-ID"
ENVIRON_KEY = "HTTP_X_REQUEST_ID"
# Where the chosen id is kept in the WSGI environ, for the layers and views inside.
CHOSEN_KEY = "spillway.request_id"
# The Celery message header that carries it to a task.
TASK_HEADER = "spillway_request_id"
# What a client may name its request with; nginx's map checks the same (nginx.conf).
PATTERN = r"[A-Za-z0-9._-]{8,128}"
VALID = re.compile(PATTERN)

_current: contextvars.ContextVar[str] = contextvars.ContextVar("spillway_request_id", default="")


def current() -> str:
    """The id of the request (or task) this code runs for; '' outside of one."""
    return _current.get()


def choose(offered: str | None) -> str:
    """``offered`` when it is a valid id, else a new one (32 hex digits, as nginx's)."""
    if offered and VALID.fullmatch(offered):
        return offered
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Outermost WSGI layer: chooses the request's id, holds it while the app runs, and
    puts it on the answer, whichever layer answers."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        chosen = environ[CHOSEN_KEY] = choose(environ.get(ENVIRON_KEY))

        def start_with_id(status, headers, exc_info=None):
            headers.append((HEADER, chosen))
            return start_response(status, headers, exc_info)

        token = _current.set(chosen)
        try:
            return self.app(environ, start_with_id)
        finally:
            _current.reset(token)


def _send_with_task(headers=None, **_) -> None:
    request_id = _current.get()
    if request_id and headers is not None:
        headers.setdefault(TASK_HEADER, request_id)


def _task_starts(task=None, **_) -> None:
    # Protocol 2 puts a message's own headers on the task's request context.
    request_id = getattr(getattr(task, "request", None), TASK_HEADER, None)
    _current.set(request_id if isinstance(request_id, str) and VALID.fullmatch(request_id) else "")


def _task_ends(**_) -> None:
    _current.set("")


def connect_celery() -> None:
    """Carry the id from a request to the tasks it sends (once per process; Celery
    dedupes a receiver connected twice). Celery is imported here, not at the top: gunicorn's
    master imports this module (spillway.logs) before its workers patch for gevent."""
    from celery.signals import before_task_publish
    from celery.signals import task_postrun
    from celery.signals import task_prerun

    before_task_publish.connect(_send_with_task)
    task_prerun.connect(_task_starts)
    task_postrun.connect(_task_ends)
