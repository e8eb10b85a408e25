"""The seed's demo: one slow endpoint that must never stall a fast one."""

import math
import time

from flask import Blueprint
from flask import current_app
from flask import request

from spillway.errors import RETRY_AFTER_SECONDS
from spillway.errors import ApiError
from spillway.security.concurrency import cap_of

bp = Blueprint("demo", __name__)

MAX_SLOW_SECONDS = 60


@bp.get("/slow")
def slow():
    """Sleep ``seconds`` (0…60, default 10), then greet.

    ``time.sleep`` is gevent's once the process is patched, so the sleep yields to
    every other request instead of holding the worker. Each one holds a connection for
    up to a minute, so a process sleeps at most SPILLWAY_DEMO_SLOW_PER_WORKER of them,
    and SPILLWAY_DEMO_SLOW_PER_ADDRESS for one address while rate limits are on.
    """
    seconds = _seconds_arg(request.args.get("seconds", "10"))
    cap = cap_of(current_app, "DEMO_SLOW", "slow demo requests", RETRY_AFTER_SECONDS)
    with cap.held(request.remote_addr or ""):
        time.sleep(seconds)
    return "Hello World!", 200, {"Content-Type": "text/plain; charset=utf-8"}


@bp.get("/index")
def index():
    """Answer at once, however many slow requests are in flight."""
    return "Beijing", 200, {"Content-Type": "text/plain; charset=utf-8"}


def _seconds_arg(raw: str) -> float:
    """Parse the ``seconds`` query argument.

    :raise ApiError: 400 when it is not a number from 0 to 60.
    """
    try:
        seconds = float(raw)
    except ValueError:
        raise ApiError(400, "seconds must be a number from 0 to 60") from None
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_SLOW_SECONDS:
        raise ApiError(400, "seconds must be a number from 0 to 60")
    return seconds
