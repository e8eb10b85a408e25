"""redis SIGKILLed and started again mid-burst, on the same port with the same AOF
directory (appendonly yes, appendfsync everysec, as deploy/templates/redis.conf)."""

import os
import signal
import time

import pytest
import redis

from tests.audit import promised_orders
from tests.factories import admin_headers
from tests.faults.burst import Burst
from tests.faults.burst import plan
from tests.faults.stack import wait_redis_loaded

OUTAGE_SECONDS = 3.0


def test_redis_killed_mid_burst(stack, record_figures):
    """During the outage clients get clean 503s with Retry-After; after the restart the app
    serves again without a restart of its own; no 202 is lost, nothing is oversold."""
    sale = stack.new_sale(stock=250, per_user_limit=2)
    buyers = stack.signup(200)
    reads = (f"/api/v1/sales/{sale['id']}", f"/api/v1/products/{sale['product_id']}")
    burst = Burst(stack.base_url, sale, plan(buyers, replays=40), reads=reads).start()
    burst.wait_progress(0.3)
    stack.redis.kill(signal.SIGKILL)
    killed_at = time.monotonic()
    given_before = promised_orders(list(burst.purchase_answers()))
    time.sleep(OUTAGE_SECONDS)
    stack.redis.start(30)
    wait_redis_loaded(stack.redis_url)  # until then, clients get 503 (redis is LOADING)
    outage_seconds = time.monotonic() - killed_at
    # Every 202 given before the kill is still there right after the restart.
    for order_id in given_before:
        reply = stack.api("GET", f"/api/v1/orders/{order_id}", headers=admin_headers())
        assert reply.status_code == 200, (order_id, reply.text)
    answers = burst.join()
    outage = [a for a in answers if a.status == 503]
    assert outage, "the kill landed while clients were buying"
    assert all(a.seconds < 10 for a in outage), "a 503 came only after a hang"
    product_reads = {a.status for a in answers if a.path == reads[1]}
    assert product_reads == {200}, "catalog reads do not need redis"
    figures = stack.audit.audit(sale, burst.purchase_answers())
    figures_all = stack.audit.audit(sale, answers)  # reads too: every answer clean
    last = {}
    for answer in burst.purchase_answers():
        last[(answer.user_id, answer.key)] = answer.status
    assert 503 not in last.values(), "every buyer was served once redis was back"
    record_figures(
        figures_all,
        given_before_kill=len(given_before),
        outage_seconds=round(outage_seconds, 1),
        accepted=figures.accepted,
        accepted_units=figures.accepted_units,
    )


@pytest.mark.parametrize("appendfsync", ["always", "everysec", "no"])
def test_acknowledged_reservations_survive_a_process_kill(stack, appendfsync, record_figures):
    """redis write()s the AOF buffer before it replies, so a SIGKILL (the process dies, the
    kernel keeps its page cache) loses no acknowledged write under any appendfsync."""
    client = redis.Redis.from_url(stack.redis_url)
    client.config_set("appendfsync", appendfsync)
    try:
        sale = stack.new_sale(stock=1000, per_user_limit=1)
        buyers = stack.signup(120, prefix=f"aof-{appendfsync}-")
        burst = Burst(stack.base_url, sale, [(b, "once", 1) for b in buyers]).start()
        answers = burst.join()
        stack.redis.kill(signal.SIGKILL)  # within the second everysec has not synced yet
    finally:
        client.close()
    accepted = [a.body["order_id"] for a in answers if a.status == 202]
    assert len(accepted) == len(buyers)
    stack.redis.start(30)
    wait_redis_loaded(stack.redis_url)
    client = redis.Redis.from_url(stack.redis_url)
    try:
        pipe = client.pipeline(transaction=False)
        for order_id in accepted:
            pipe.exists(f"spillway:order:{order_id}")
        assert sum(pipe.execute()) == len(accepted), "an acknowledged reservation was lost"
        remaining = int(client.hget(f"spillway:sale:{sale['id']}", "remaining"))
        assert remaining == 1000 - len(accepted)
    finally:
        client.close()
    stack.wait_healthy()
    record_figures(stack.audit.audit(sale, answers), appendfsync=appendfsync)


def test_redis_frozen_mid_burst(stack, record_figures):
    """A redis that hangs (SIGSTOP) rather than dies: clients get a 503 within redis's
    2 s socket timeout, never a hang; a purchase whose reply timed out may still have
    reserved, and its retry with the same Idempotency-Key answers that very order."""
    sale = stack.new_sale(stock=250, per_user_limit=2)
    buyers = stack.signup(200)
    burst = Burst(stack.base_url, sale, plan(buyers, replays=40)).start()
    burst.wait_progress(0.3)
    os.killpg(stack.redis.process.pid, signal.SIGSTOP)
    try:
        time.sleep(OUTAGE_SECONDS)
    finally:
        os.killpg(stack.redis.process.pid, signal.SIGCONT)
    answers = burst.join()
    frozen = [a for a in answers if a.status == 503]
    assert frozen, "the freeze landed while clients were buying"
    assert max(a.seconds for a in answers) < 10, "an answer waited past the socket timeout"
    figures = stack.audit.audit(sale, answers)
    record_figures(figures)
