"""Log lines of every Spillway process in one format: ``text`` (for a person) or ``json``
(one object per line, for a collector), by SPILLWAY_LOG_FORMAT.

Every line carries the id of the request or task it was written for (spillway.request_id),
added by :class:`RequestIdFilter`. :func:`configure` sets up the root logger of a web or
Celery process (the Spillway extension calls it); :func:`adopt` gives other handlers the
same format: gunicorn's own (:class:`GunicornLogger`) and Celery's task logger.
"""

import json
import logging
import sys
import time
from typing import NoReturn

from spillway import request_id

TEXT_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
# What every LogRecord has; anything else on a record came from ``extra=`` and is logged.
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (or '') to every record a handler writes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", ""):
            record.request_id = request_id.current()
        return True


def extras(record: logging.LogRecord) -> dict:
    """What the call added with ``extra=`` (not the request id), but for an extra that is
    the message's own arguments: Celery logs each task outcome with ``extra={"data": d}``
    and ``d`` as the arguments, so it is in the message already (and, for a task that
    raised, holds its whole traceback as a string)."""
    return {
        key: value
        for key, value in vars(record).items()
        if key not in _RECORD_FIELDS and key != "request_id" and value is not record.args
    }


class TextFormatter(logging.Formatter):
    """The usual line, then ``request_id=…`` and each extra as ``key=value``."""

    def __init__(self):
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        tail = [f"{key}={value}" for key, value in extras(record).items()]
        if getattr(record, "request_id", ""):
            tail.insert(0, f"request_id={record.request_id}")
        if not tail:
            return line
        first, newline, rest = line.partition("\n")  # after the message, before a traceback
        return f"{first} {' '.join(tail)}{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, pid, message,
    request_id, the extras, and the traceback as one string."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = time.gmtime(record.created)
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", seconds) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", ""),
            **extras(record),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of ``log_format`` (``text`` or ``json``, checked by spillway.settings)."""
    return JsonFormatter() if log_format == "json" else TextFormatter()


def adopt(logger: logging.Logger, log_format: str) -> None:
    """Give every handler of ``logger`` the format and the request id."""
    for handler in logger.handlers:
        handler.setFormatter(formatter(log_format))
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())


class _OurHandler(logging.StreamHandler):
    """The handler :func:`configure` installs (found again, never added twice)."""


# What configure() chose last, for the loggers Celery sets up after it (the worker's).
_chosen = {"format": "text"}


def configure(level: str, log_format: str) -> None:
    """The root logger writes ``level`` and above to stderr in ``log_format`` (supervisord
    collects and rotates it). Safe to call again: the handler is replaced, not added."""
    _chosen["format"] = log_format
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _OurHandler)]:
        root.removeHandler(handler)
    handler = _OurHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    handler.addFilter(RequestIdFilter())
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("spillway").setLevel(level)


def _adopt_celery_logger(logger=None, **_) -> None:
    if logger is not None:
        adopt(logger, _chosen["format"])


def connect_celery() -> None:
    """Celery's own loggers in our format: the task logger gets a handler of Celery's
    when the worker starts (Celery dedupes a receiver connected twice)."""
    from celery.signals import after_setup_logger
    from celery.signals import after_setup_task_logger

    after_setup_logger.connect(_adopt_celery_logger)
    after_setup_task_logger.connect(_adopt_celery_logger)


def refuse_to_start(log: logging.Logger, who: str, reason: object) -> NoReturn:
    """Stop a process that must not serve, in one line: the logged one (in the log's format,
    text or JSON); the exit repeats it only where the log would not show it.

    :raise SystemExit: always.
    """
    log.error("%s refuses to start: %s", who, reason)
    said = log.isEnabledFor(logging.ERROR)
    raise SystemExit(1 if said else f"{who} refuses to start: {reason}")
