"""Caps on requests held open at once, per client address and per worker process.

A rate limit counts requests as they arrive; a request that stays open (a live-stock
stream, the demo's slow request) holds a connection and a greenlet for as long as it
lasts, and one address opening them slowly never meets a rate limit. What bounds those
is how many may be open at once. Counts are per process: each gunicorn worker has its own
connections to protect, and counting in-process costs no round trip. Per address only
while rate limits are on (``SPILLWAY_RATE_LIMITS=off`` is for load tests from one
address); per worker always. Addresses are keyed as the rate limits key them (IPv6 by /64).
"""

from collections import Counter
from contextlib import contextmanager

from flask import Flask

from spillway.errors import ApiError
from spillway.security.ratelimits import address_key


class ConcurrencyCap:
    """How many of one kind of request are open in this process, in all and per address.

    Under gevent nothing yields between a check and its count, so the cap holds exactly.
    """

    def __init__(self, what: str, per_worker: int, per_address: int | None, retry_after: int):
        self.what = what
        self.per_worker = per_worker
        self.per_address = per_address
        self.retry_after = retry_after
        self.open = 0
        self.by_address: Counter[str] = Counter()

    def acquire(self, address: str) -> str:
        """Count one more open request from ``address``; give its key to :meth:`release`.

        :raise ApiError: 429 at the address's cap, 503 at the process's (Retry-After).
        """
        key = address_key(address)
        if self.per_address is not None and self.by_address[key] >= self.per_address:
            raise ApiError(
                429,
                f"Too many {self.what} open from your address (at most "
                f"{self.per_address}); close one first.",
                retry_after=self.retry_after,
            )
        if self.open >= self.per_worker:
            raise ApiError(
                503,
                f"This server holds as many {self.what} as it can; retry shortly.",
                retry_after=self.retry_after,
            )
        self.open += 1
        self.by_address[key] += 1
        return key

    def release(self, key: str) -> None:
        self.open -= 1
        self.by_address[key] -= 1
        if self.by_address[key] <= 0:
            del self.by_address[key]

    @contextmanager
    def held(self, address: str):
        """Hold one place for the length of a ``with`` block (see :meth:`acquire`)."""
        key = self.acquire(address)
        try:
            yield
        finally:
            self.release(key)


def cap_of(app: Flask, name: str, what: str, retry_after: int) -> ConcurrencyCap:
    """The process's cap ``name``, from the settings ``<name>_PER_WORKER`` and
    ``<name>_PER_ADDRESS`` (the latter only while rate limits are on)."""
    cap = app.extensions.get(f"cap:{name}")
    if cap is None:
        per_address = (
            app.config[f"{name}_PER_ADDRESS"] if app.config["RATE_LIMITS_ENABLED"] else None
        )
        cap = app.extensions.setdefault(
            f"cap:{name}",
            ConcurrencyCap(what, app.config[f"{name}_PER_WORKER"], per_address, retry_after),
        )
    return cap
