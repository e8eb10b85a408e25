"""Live stock over server-sent events: ``GET /api/v1/sales/{id}/stream``.

Thousands of open streams must cost the purchase path nothing and redis next to nothing,
so no stream talks to redis. One poller greenlet per process reads the remaining stock of
every sale somebody watches — one HGET per sale, all sales in one pipelined round trip —
every ``STREAM_POLL_MS``, and wakes the streams of a sale whose (remaining, status) changed.
It runs only while a stream is open. The status is computed here from the sale's times and
the server clock, so a stream also speaks when its sale starts or ends.

A stream waits on its sale's ``changed`` event: the poller sets it and puts a fresh one in
its place, so one ``set`` wakes every stream of the sale and no stream can miss a change
(it takes the event before it compares the state). A comment line every
``STREAM_HEARTBEAT_S`` keeps proxies from closing an idle stream, and is also how a
disconnected client is noticed: the write fails, the WSGI server closes the generator, and
its ``finally`` unsubscribes.

A stream holds a connection for as long as it is open, and this path runs before Flask's
rate limiter, so it is bounded here: a stream ends after ``STREAM_MAX_LIFETIME_S`` (the
browser reconnects by itself), and a process holds at most ``STREAMS_PER_WORKER`` streams,
``STREAMS_PER_ADDRESS`` from one client address while rate limits are on
(spillway.security.concurrency).
"""

import functools
import json
import logging
import math
import random
import re
import time
from dataclasses import dataclass
from dataclasses import field

import gevent
import redis
from flask import Flask
from gevent.event import Event

from flashsale.sales import stock
from flashsale.sales.service import get_sale
from flashsale.sales.service import parse_sale_id
from flashsale.sales.service import status_at
from spillway.clock import epoch_ms
from spillway.clock import now_ms
from spillway.fastpath import FastPath
from spillway.security.concurrency import cap_of

log = logging.getLogger(__name__)

# How long a browser's EventSource waits before reconnecting after the stream drops.
RECONNECT_MS = 2000
HEARTBEAT = b": ping\n\n"
STREAM_PATH = re.compile(r"^/api/v1/sales/([0-9]{1,18})/stream$")
# X-Accel-Buffering: nginx passes each event on at once instead of buffering the body.
STREAM_HEADERS = [
    ("Content-Type", "text/event-stream; charset=utf-8"),
    ("Cache-Control", "no-cache"),
    ("X-Accel-Buffering", "no"),
]
ERROR_LOG_EVERY_S = 10.0
# A client refused a stream (its address's or this process's cap) may try again after this.
STREAM_RETRY_AFTER_S = 10


@dataclass
class SaleWatch:
    """A watched sale: its fixed times, the last state read, and its open streams."""

    sale_id: int
    starts_ms: int
    ends_ms: int
    remaining: int
    status: str = ""
    streams: int = 0
    changed: Event = field(default_factory=Event)
    frame: bytes = b""  # the event every stream of the sale sends next, encoded once

    def update(self, remaining: int, at_ms: int) -> None:
        """Take a fresh reading; wake this sale's streams if anything they show changed."""
        status = status_at(self.starts_ms, self.ends_ms, remaining, at_ms)
        if (remaining, status) == (self.remaining, self.status):
            return
        self.remaining, self.status = remaining, status
        data = json.dumps({"remaining": remaining, "status": status})
        self.frame = f"data: {data}\n\n".encode()
        woken, self.changed = self.changed, Event()
        woken.set()


class StockBroadcaster:
    """The process's one poller and the sales it watches (kept in ``app.extensions``)."""

    def __init__(self, client: redis.Redis, poll_s: float):
        self.client = client
        self.poll_s = poll_s
        self.watches: dict[int, SaleWatch] = {}
        self.poller: gevent.Greenlet | None = None
        self._last_error_log = 0.0

    def subscribe(self, sale_id: int, load_sale) -> SaleWatch:
        """Watch a sale for one more stream; start the poller if idle.

        :param load_sale: returns the sale's (starts_ms, ends_ms, stock); called only for
            the first stream of a sale, so a thousand streams cost one database read.
        :raise ApiError: what ``load_sale`` raises (404 for an unknown sale).
        """
        watch = self.watches.get(sale_id)
        if watch is None:
            starts_ms, ends_ms, units = load_sale()
            # The first stream of a sale reads it once at once, so its first event is live.
            reading = self._read([sale_id])[0]
            watch = self.watches.setdefault(
                sale_id,
                SaleWatch(sale_id, starts_ms, ends_ms, units if reading is None else reading),
            )
            watch.update(watch.remaining, now_ms())
        watch.streams += 1
        if self.poller is None or self.poller.dead:
            self.poller = gevent.spawn(self._poll)
        return watch

    def unsubscribe(self, watch: SaleWatch) -> None:
        watch.streams -= 1
        if watch.streams <= 0 and self.watches.get(watch.sale_id) is watch:
            del self.watches[watch.sale_id]

    def _read(self, sale_ids: list[int]) -> list[int | None]:
        """Each sale's live remaining stock (sharded sales summed), None where redis does
        not know it: one pipelined round trip for every watched sale."""
        remaining = stock.remaining_many(sale_ids, self.client)
        return [remaining.get(sale_id) for sale_id in sale_ids]

    def _poll(self) -> None:
        # Ends by itself once the last stream is gone; subscribe() starts a new one.
        while self.watches:
            gevent.sleep(self.poll_s)
            watches = list(self.watches.values())
            if not watches:
                break
            try:
                readings = self._read([watch.sale_id for watch in watches])
            except Exception as exc:  # noqa: BLE001  (the poller must outlive any failure)
                self._log_error(exc)
                continue
            at_ms = now_ms()
            for watch, remaining in zip(watches, readings):
                watch.update(watch.remaining if remaining is None else remaining, at_ms)

    def _log_error(self, exc: Exception) -> None:
        # Streams keep their last state and heartbeat on; one line per 10 s, not per tick.
        if time.monotonic() - self._last_error_log >= ERROR_LOG_EVERY_S:
            self._last_error_log = time.monotonic()
            log.warning("live stock poll failed (streams keep their last state): %s", exc)


def broadcaster_of(app: Flask) -> StockBroadcaster:
    if "sale_stream" not in app.extensions:
        app.extensions["sale_stream"] = StockBroadcaster(
            app.extensions["redis"], app.config["STREAM_POLL_MS"] / 1000
        )
    return app.extensions["sale_stream"]


def events(watch: SaleWatch, heartbeat_s: float, lifetime_s: float = math.inf):
    """The stream's body: the state now, then each change, and a heartbeat when idle; it
    ends after ``lifetime_s``, and the browser's EventSource reconnects after ``retry:``."""
    yield f"retry: {RECONNECT_MS}\n\n".encode()
    ends = time.monotonic() + lifetime_s
    sent = None
    while (left := ends - time.monotonic()) > 0:
        changed = watch.changed  # taken first: a change after this sets it
        if watch.frame is not sent:
            sent = watch.frame
            yield sent
        elif not changed.wait(timeout=min(heartbeat_s, left)) and left > heartbeat_s:
            yield HEARTBEAT


class EventStream:
    """A response body that unsubscribes, and frees its place under the stream caps, when
    the server closes it: once it ended, after a failed write (the client left), at
    shutdown, or before it was ever iterated."""

    def __init__(
        self,
        broadcaster: StockBroadcaster,
        watch: SaleWatch,
        heartbeat_s: float,
        lifetime_s: float,
        release,
    ):
        self.broadcaster = broadcaster
        self.watch = watch
        self.events = events(watch, heartbeat_s, lifetime_s)
        self.release = release
        self.closed = False

    def __iter__(self):
        return self.events

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.events.close()
            self.broadcaster.unsubscribe(self.watch)
            self.release()


def open_stream(app: Flask, raw_sale_id: str, address: str) -> EventStream:
    """Subscribe a new stream from ``address`` to a sale.

    :raise ApiError: 404 when there is no such sale; 429 or 503 when the address or this
        process holds as many streams as SPILLWAY_STREAMS_PER_ADDRESS or _PER_WORKER.
    """
    sale_id = parse_sale_id(raw_sale_id)

    def load_sale() -> tuple[int, int, int]:
        with app.app_context():
            sale = get_sale(sale_id)
            return epoch_ms(sale.starts_at), epoch_ms(sale.ends_at), sale.stock

    cap = cap_of(app, "STREAMS", "live-stock streams", STREAM_RETRY_AFTER_S)
    key = cap.acquire(address)
    try:
        broadcaster = broadcaster_of(app)
        watch = broadcaster.subscribe(sale_id, load_sale)
    except BaseException:
        cap.release(key)
        raise
    # Streams opened together (a page of buyers at the opening second) end spread over the
    # last tenth of their lifetime, so they do not all reconnect at once.
    lifetime_s = app.config["STREAM_MAX_LIFETIME_S"] * random.uniform(0.9, 1.0)
    return EventStream(
        broadcaster,
        watch,
        app.config["STREAM_HEARTBEAT_S"],
        lifetime_s,
        functools.partial(cap.release, key),
    )


class StreamFastPath(FastPath):
    """Opens streams before Flask's request machinery.

    A stream lives as long as its page is open, and so would everything Flask builds for
    the request: its Request (kept alive by the environ), the Response and its iterator
    wrappers, and one more level of stack per wrapper in the greenlet. Measured under
    gunicorn's gevent worker (bench/sse_fanout.py): 23 KB of RSS a stream through Flask,
    about 15 KB of which is gunicorn's own connection; no app context either once a sale
    has a stream (its first stream reads the database, the others reuse that).
    """

    route = "/api/v1/sales/<sale_id>/stream"

    def match(self, environ):
        match = STREAM_PATH.match(environ.get("PATH_INFO", ""))
        return match if match is not None and environ["REQUEST_METHOD"] == "GET" else None

    def answer(self, environ, start_response, found):
        body = open_stream(self.app, found.group(1), environ.get("REMOTE_ADDR", ""))
        start_response("200 OK", STREAM_HEADERS)
        return body
