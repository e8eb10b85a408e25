"""A watched sale's state: which readings wake its streams, and what they are sent."""

import time

import gevent

from flashsale.sales.stream import SaleWatch
from flashsale.sales.stream import events

STARTS, ENDS = 1_000, 2_000


def watch(remaining: int = 5, at_ms: int = 1_500) -> SaleWatch:
    sale = SaleWatch(1, STARTS, ENDS, remaining)
    sale.update(remaining, at_ms)
    return sale


def test_status_follows_the_api_rules():
    """scheduled before the start, ended at the end whatever the stock, sold_out at zero."""
    assert watch(at_ms=999).status == "scheduled"
    assert watch(at_ms=1_000).status == "active"
    assert watch(remaining=0).status == "sold_out"
    assert watch(remaining=0, at_ms=2_000).status == "ended"


def test_only_a_change_wakes_the_streams():
    """The same reading again sets nothing; a new one sets the old event and replaces it."""
    sale = watch()
    first = sale.changed
    sale.update(5, 1_600)
    assert not first.is_set() and sale.changed is first
    sale.update(4, 1_600)
    assert first.is_set() and sale.changed is not first and not sale.changed.is_set()
    sale.update(4, 2_000)  # the clock alone ends the sale
    assert sale.status == "ended"


def test_a_stream_sends_the_state_then_changes_then_heartbeats():
    """retry, the state now, each change, and a comment when nothing changes."""
    sale = watch()
    stream = events(sale, heartbeat_s=0.05)
    assert next(stream).startswith(b"retry: ")
    assert next(stream) == b'data: {"remaining": 5, "status": "active"}\n\n'
    assert next(stream) == b": ping\n\n"
    gevent.spawn_later(0.01, sale.update, 3, 1_600)
    assert next(stream) == b'data: {"remaining": 3, "status": "active"}\n\n'
    stream.close()


def test_a_stream_ends_after_its_lifetime():
    """Heartbeats while it lives, none past its end: the body simply stops (the browser
    reconnects after retry:)."""
    stream = events(watch(), heartbeat_s=0.05, lifetime_s=0.2)
    started = time.monotonic()
    sent = list(stream)
    assert sent[0].startswith(b"retry: ") and sent[1].startswith(b"data: ")
    assert set(sent[2:]) == {b": ping\n\n"}
    assert 0.2 <= time.monotonic() - started < 1.0
