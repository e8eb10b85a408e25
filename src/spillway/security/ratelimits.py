"""Rate limits on the shared redis: per client IP on every Flask route, per buyer on purchase,
and per client IP on signup (minting buyers is what would defeat the per-buyer limit).

A client's address is keyed by :func:`address_key`: IPv6 by its /64, not its /128.

Flask-Limiter applies the per-IP default (RATELIMIT_DEFAULT) to every Flask route. The
per-buyer purchase limit is counted inside the purchase's own reserve.lua round trip
(:func:`buyer_limits` gives it the keys), from both the Flask view and the WSGI fast path
(sales/fastpath.py), on the keys of Flask-Limiter's `limits` fixed-window strategy and
storage, so both paths count in the same redis buckets. ``SPILLWAY_RATE_LIMITS=off`` turns both off.
"""

import ipaddress
import logging
import math
import time

import redis
from flask import Flask
from flask import current_app
from flask import request
from flask_limiter import Limiter
from flask_limiter import RateLimitExceeded
from flask_limiter.util import get_remote_address
from limits import parse_many

from spillway.errors import error_response

log = logging.getLogger(__name__)

# Probes from load balancers and supervisors are never limited.
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
BUYER_SCOPE = "purchase-per-buyer"
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
limiter = Limiter(key_func=client_address,
                  default_limits=[lambda: current_app.config["RATELIMIT_DEFAULT"]])


def signup_limit():
    """A view decorator: SPILLWAY_SIGNUP_LIMIT_PER_IP, on top of the per-address default."""
    return limiter.limit(lambda: current_app.config["RATELIMIT_SIGNUP"], scope="signup",
                         override_defaults=False)


def init_app(app: Flask) -> None:
    app.config["RATELIMIT_ENABLED"] = app.config["RATE_LIMITS_ENABLED"]
    limiter.init_app(app)
    app.extensions["buyer_limits"] = parse_many(app.config["RATELIMIT_PER_BUYER"])
    if app.config["RATE_LIMITS_ENABLED"]:
        app.extensions["buyer_limit_keys"] = _key_templates(app.extensions["buyer_limits"])
    app.register_error_handler(RateLimitExceeded, _too_many_requests)


@limiter.request_filter
def _exempt() -> bool:
    return request.path in EXEMPT_PATHS


def _too_many_requests(exc: RateLimitExceeded):
    """Flask-Limiter's refusal in the JSON error shape, with the real Retry-After."""
    current = limiter.current_limit
    wait = _seconds_until(current.reset_at, current.limit.get_expiry()) if current else None
    if request.endpoint == "sales.purchase":
        count_refusal((request.view_args or {}).get("sale_id", ""))
    return error_response(429, "rate_limited", f"Too many requests ({exc.description}); "
                          "slow down.", wait)


def _seconds_until(reset_at: float, window_s: int) -> int:
    # `limits` rounds the reset time up to the next whole second: never say more than a window.
    return min(window_s, max(1, math.ceil(reset_at - time.time())))


def buyer_limits(user_id: str) -> list[tuple[str, int, int]]:
    """(counter key, most hits, window seconds) of each per-buyer purchase limit, for
    reserve.lua's round trip to count (spillway.sales.stock.reserve); none when limits are
    off. The keys are those `limits`' fixed-window strategy uses on Flask-Limiter's storage.
    """
    if not current_app.config["RATE_LIMITS_ENABLED"]:
        return []
    return [(f"{head}{user_id}{tail}", most, seconds)
            for head, tail, most, seconds in current_app.extensions["buyer_limit_keys"]]


def _key_templates(items) -> list[tuple[str, str, int, int]]:
    # The storage key `limits` would build for each limit, split around the buyer's id once,
    # so a purchase pays for an f-string rather than key_for's escaping and joining.
    storage, marker = limiter.limiter.storage, "\x00buyer\x00"
    templates = []
    for item in items:
        head, _, tail = storage.prefixed_key(item.key_for(BUYER_SCOPE, marker)).partition(marker)
        templates.append((head, tail, item.amount, item.get_expiry()))
    return templates


def count_refusal(sale_id) -> None:
    """Add one to the sale's ``rejected.rate_limited``, if redis knows the sale."""
    from spillway.sales import stock

    try:
        stock.count_rejection(sale_id, "rate_limited")
    except redis.exceptions.RedisError as exc:
        log.warning("could not count a rate-limited purchase: %s", exc)
