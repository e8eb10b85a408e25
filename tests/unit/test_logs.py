"""The runtime's log lines (spillway.logs) and request ids (spillway.request_id): both
formats, the id on every record made during a request, and which ids a client may choose."""

import json
import logging

import pytest

from spillway import logs
from spillway import request_id
from spillway.settings import SettingsError
from spillway.settings import log_format
from spillway.settings import log_rotation


def record(message="sold %d", args=(3,), **extra) -> logging.LogRecord:
    made = logging.makeLogRecord(
        {"name": "shop.orders", "levelname": "INFO", "msg": message, "args": args, **extra}
    )
    logs.RequestIdFilter().filter(made)
    return made


def during_request(chosen: str, call):
    """``call()``'s result while RequestIdMiddleware holds ``chosen``."""
    seen = {}

    def app(environ, start_response):
        seen["result"] = call()
        start_response("200 OK", [])
        return [b""]

    request_id.RequestIdMiddleware(app)({request_id.ENVIRON_KEY: chosen}, lambda *a: None)
    return seen["result"]


def test_json_is_one_object_per_line_with_the_request_id_and_extras():
    """A JSON line holds the message, level, logger, the request's id and each extra; a
    traceback stays inside the one line."""
    made = during_request("order-abc-123", lambda: record(order_id="o1"))
    line = logs.JsonFormatter().format(made)
    parsed = json.loads(line)
    assert parsed["message"] == "sold 3"
    assert parsed["level"] == "INFO"
    assert parsed["logger"] == "shop.orders"
    assert parsed["request_id"] == "order-abc-123"
    assert parsed["order_id"] == "o1"
    assert parsed["time"].endswith("Z")
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        failed = record(exc_info=sys.exc_info())
    line = logs.JsonFormatter().format(failed)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exc"]


def test_text_line_ends_with_the_request_id_before_any_traceback():
    """The text line: the usual prefix, the message, then request_id=… and the extras."""
    made = during_request("order-abc-123", lambda: record(order_id="o1"))
    line = logs.TextFormatter().format(made)
    assert line.endswith("shop.orders: sold 3 request_id=order-abc-123 order_id=o1")


def test_an_extra_that_is_the_messages_arguments_is_not_repeated():
    """Celery logs a task's outcome as ``log(msg, data, extra={"data": data})``; the data
    (with a failed task's traceback as a string) is in the message already."""
    data = {"name": "mark", "traceback": "Traceback (most recent call last): ..."}
    made = logging.LogRecord(
        "celery.app.trace", logging.INFO, __file__, 1, "Task %(name)s raised", (data,), None
    )
    made.data = made.args  # the record unwrapped the lone mapping: the very same object
    for formatter in (logs.TextFormatter(), logs.JsonFormatter()):
        assert "Traceback" not in formatter.format(made)


def test_outside_a_request_the_id_is_empty():
    """A record made outside any request (or after one) has no request id."""
    during_request("order-abc-123", lambda: None)
    assert record().request_id == ""
    assert json.loads(logs.JsonFormatter().format(record()))["request_id"] == ""


@pytest.mark.parametrize(
    "offered",
    ["abcdefgh", "A.b_c-0123456789", "x" * 128, "0123456789abcdef0123456789abcdef"],
)
def test_a_valid_client_id_is_kept(offered):
    """8 to 128 of [A-Za-z0-9._-]: the client's id names the request."""
    assert request_id.choose(offered) == offered


@pytest.mark.parametrize(
    "offered", [None, "", "short", "x" * 129, "has space1", "semi;colon", "new\nline12", "é" * 9]
)
def test_an_invalid_client_id_is_replaced(offered):
    """Anything else (missing, too short or long, other characters: a log injection) gets
    a new id of 32 hex digits, as nginx's $request_id."""
    chosen = request_id.choose(offered)
    assert chosen != offered
    assert len(chosen) == 32 and int(chosen, 16) >= 0


def test_every_answer_carries_the_id():
    """The middleware adds X-Request-ID to the answer of whichever layer answered."""
    answered = {}

    def app(environ, start_response):
        start_response("404 NOT FOUND", [("Content-Type", "text/plain")])
        return [b""]

    def start_response(status, headers, exc_info=None):
        answered.update(headers)

    request_id.RequestIdMiddleware(app)({}, start_response)
    assert request_id.VALID.fullmatch(answered["X-Request-ID"])


def test_log_format_setting_is_text_or_json(monkeypatch):
    """SPILLWAY_LOG_FORMAT: text by default, json, or a one-line refusal naming it."""
    monkeypatch.delenv("SPILLWAY_LOG_FORMAT", raising=False)
    assert log_format() == "text"
    monkeypatch.setenv("SPILLWAY_LOG_FORMAT", "json")
    assert log_format() == "json"
    monkeypatch.setenv("SPILLWAY_LOG_FORMAT", "xml")
    with pytest.raises(SettingsError, match="SPILLWAY_LOG_FORMAT"):
        log_format()


def test_log_rotation_settings(monkeypatch):
    """supervisord's sizes (50MB, 3 backups by default); a malformed one names its variable."""
    monkeypatch.delenv("SPILLWAY_LOG_MAX_BYTES", raising=False)
    monkeypatch.delenv("SPILLWAY_LOG_BACKUPS", raising=False)
    assert log_rotation() == {"max_bytes": "50MB", "backups": 3}
    monkeypatch.setenv("SPILLWAY_LOG_MAX_BYTES", "1 GB")
    with pytest.raises(SettingsError, match="SPILLWAY_LOG_MAX_BYTES"):
        log_rotation()


def test_configure_twice_keeps_one_handler():
    """configure() replaces its own handler: a factory called twice logs each line once."""
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    try:
        logs.configure("INFO", "json")
        logs.configure("INFO", "text")
        ours = [h for h in root.handlers if h not in before]
        assert len(ours) == 1
        assert isinstance(ours[0].formatter, logs.TextFormatter)
    finally:
        for handler in [h for h in root.handlers if h not in before]:
            root.removeHandler(handler)
        root.setLevel(level)
