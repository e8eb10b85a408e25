"""Rate limits per client address on every Flask route of the app, on the runtime's redis
(Flask-Limiter, fixed windows): ``SPILLWAY_RATE_LIMIT_PER_IP``. An app adds limits of its
own with :data:`limiter` (``limiter.limit(...)``), and the refusal is the JSON 429 with a
real Retry-After. A client's address is keyed by :func:`address_key`: IPv6 by its /64, not
its /128. ``SPILLWAY_RATE_LIMITS=off`` turns them off (load tests from one address).
"""

import ipaddress
import math
import time

from flask import Flask
from flask import current_app
from flask import request
from flask_limiter import Limiter
from flask_limiter import RateLimitExceeded
from flask_limiter.util import get_remote_address

from spillway.errors import error_response

# Probes from load balancers and supervisors are never limited.
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
IPV6_PREFIX = 64


def client_address() -> str:
    """The key of the request's client in every per-address limit: see address_key."""
    return address_key(get_remote_address())


def address_key(address: str) -> str:
    """An IPv4 address as it is; an IPv6 one as its /64, the block one subscriber is given
    (keyed by /128, one host would have 2**64 fresh keys); an IPv4-mapped one as IPv4."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # not an address (a unix socket's peer): keyed as it is
    if ip.version == 6 and ip.ipv4_mapped:
        return str(ip.ipv4_mapped)
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/{IPV6_PREFIX}", strict=False))
    return str(ip)


# The per-address default is read from the app serving the request: Flask-Limiter keeps
# the default limits of the first app it is bound to, and a process (a test run) may
# build several apps with different settings.
limiter = Limiter(
    key_func=client_address, default_limits=[lambda: current_app.config["RATELIMIT_DEFAULT"]]
)


def init_app(app: Flask) -> None:
    app.config["RATELIMIT_ENABLED"] = app.config["RATE_LIMITS_ENABLED"]
    limiter.init_app(app)
    app.register_error_handler(RateLimitExceeded, too_many_requests)


@limiter.request_filter
def _exempt() -> bool:
    return request.path in EXEMPT_PATHS


def too_many_requests(exc: RateLimitExceeded):
    """Flask-Limiter's refusal in the JSON error shape, with the real Retry-After."""
    current = limiter.current_limit
    wait = _seconds_until(current.reset_at, current.limit.get_expiry()) if current else None
    return error_response(
        429, "rate_limited", f"Too many requests ({exc.description}); slow down.", wait
    )


def _seconds_until(reset_at: float, window_s: int) -> int:
    # `limits` rounds the reset time up to the next whole second: never say more than a window.
    return min(window_s, max(1, math.ceil(reset_at - time.time())))
