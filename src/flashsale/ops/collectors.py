"""Metrics read from redis at scrape time: the outbox and the orders persisted.

They describe shared state, not one process, so they are not recorded per process but
asked of redis when Prometheus scrapes (a few commands in one round trip).
"""

import logging

from prometheus_client.core import CounterMetricFamily
from prometheus_client.core import GaugeMetricFamily
from redis.exceptions import RedisError

from flashsale.keys import OUTBOX
from flashsale.keys import OUTBOX_GROUP
from spillway.counters import COUNTERS_KEY

log = logging.getLogger(__name__)

PERSISTERS = OUTBOX_GROUP.encode()
PERSISTED_COUNTER = "orders.persisted"
# (family, name, help, key of outbox_state); counters get "_total" from the exposition.
QUEUE_METRICS = (
    (
        GaugeMetricFamily,
        "spillway_outbox_entries",
        "Reservations in the outbox, not yet persisted.",
        "depth",
    ),
    (
        GaugeMetricFamily,
        "spillway_outbox_pending_entries",
        "Outbox entries a worker took and has not acknowledged.",
        "pending",
    ),
    (
        CounterMetricFamily,
        "spillway_outbox_added",
        "Reservations ever written to the outbox (admissions).",
        "added",
    ),
    (
        CounterMetricFamily,
        "spillway_orders_persisted",
        "Orders the workers persisted from the outbox.",
        "persisted",
    ),
)


def outbox_state(client) -> dict[str, int]:
    """The outbox's depth, pending entries and entries ever added, and orders persisted.

    :raise redis.exceptions.RedisError: redis is down.
    """
    pipe = client.pipeline(transaction=False)
    pipe.xlen(OUTBOX)
    pipe.xinfo_stream(OUTBOX)
    pipe.xinfo_groups(OUTBOX)
    pipe.hget(COUNTERS_KEY, PERSISTED_COUNTER)
    depth, stream, groups, persisted = pipe.execute(raise_on_error=False)
    for reply in (depth, persisted):
        if isinstance(reply, Exception):
            raise reply
    # No stream yet (nothing was ever reserved): XINFO answers an error, read as zeros.
    stream = {} if isinstance(stream, Exception) else stream
    groups = [] if isinstance(groups, Exception) else groups
    pending = sum(g["pending"] for g in groups if _name(g) == PERSISTERS)
    return {
        "depth": depth,
        "pending": pending,
        "added": stream.get("entries-added", 0),
        "persisted": int(persisted or 0),
    }


def _name(group: dict) -> bytes:
    name = group["name"]
    return name if isinstance(name, bytes) else name.encode()


class QueueCollector:
    """A custom collector: outbox depth, pending entries, reservations queued, orders
    persisted; ``spillway_redis_up`` says whether redis answered."""

    def __init__(self, app):
        self.client = app.extensions["redis"]

    def collect(self):
        up = GaugeMetricFamily("spillway_redis_up", "Whether redis answered this scrape.")
        try:
            state = outbox_state(self.client)
        except RedisError as exc:
            log.warning("metrics: redis unavailable for the queue metrics: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        for family, name, documentation, key in QUEUE_METRICS:
            yield family(name, documentation, value=state[key])
