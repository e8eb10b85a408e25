"""The redis primary SIGKILLed mid-burst under Redis Sentinel: a primary, two replicas and
three Sentinels, the app (gunicorn, gevent), a Celery worker with beat and the audit all
finding the primary through the Sentinels, and every purchase waiting for one replica
before its 202 (SPILLWAY_REDIS_DURABILITY=replica).

During the switch clients get clean 503s with Retry-After; the Sentinels promote the most
up-to-date replica; the app and the worker follow it without a restart; after the burst
every 202 is exactly one order, nothing is oversold and the reconciler finds the books
balanced. The old primary, started again, comes back as a replica of the new one."""

import shutil
import signal
import time

import pytest

from tests import sentinels
from tests.audit import promised_orders
from tests.faults.burst import Burst
from tests.faults.burst import plan
from tests.faults.conftest import artifacts_dir
from tests.faults.stack import FaultStack
from tests.waiting import wait_until


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    work = tmp_path_factory.mktemp("sentinel-stack")
    running = FaultStack(work, sentinel=True)
    try:
        running.start_worker()
        yield running
    finally:
        running.stop()
        shutil.copytree(running.logs, artifacts_dir() / "sentinel-stack", dirs_exist_ok=True)


def primary_port(stack) -> int | None:
    return sentinels.primary_port(tuple(sentinel.port for sentinel in stack.sentinels))


def role(port: int) -> dict:
    return sentinels.ask(port, None, "INFO", "replication")


def test_primary_killed_mid_burst_fails_over_and_loses_no_202(stack, record_figures):
    sale = stack.new_sale(stock=250, per_user_limit=2)
    buyers = stack.signup(200)
    burst = Burst(stack.base_url, sale, plan(buyers, replays=40)).start()
    burst.wait_progress(0.3)
    old = stack.redis.port
    stack.redis.kill(signal.SIGKILL)
    killed_at = time.monotonic()
    given_before = promised_orders(list(burst.purchase_answers()))
    wait_until(lambda: primary_port(stack), 60, 0.1, until=lambda port: port not in (None, old))
    switch_seconds = time.monotonic() - killed_at
    answers = burst.join()
    outage = [a for a in answers if a.status == 503]
    assert all(a.seconds < 10 for a in outage), "a 503 came only after a hang"
    last = {(a.user_id, a.key): a.status for a in burst.purchase_answers()}
    assert 503 not in last.values(), "every buyer was served once the replica took over"
    figures = stack.audit.audit(sale, answers)  # every 202 one order, no oversell, reconciled
    assert set(given_before) <= set(promised_orders(answers))
    record_figures(
        figures,
        given_before_kill=len(given_before),
        switch_seconds=round(switch_seconds, 1),
        answers_503=len(outage),
        accepted=figures.accepted,
        accepted_units=figures.accepted_units,
    )

    # The old primary, back on its AOF, is told by the Sentinels to follow the primary.
    stack.redis.start(30)
    sentinels.wait_following(old, tuple(sentinel.port for sentinel in stack.sentinels))


def test_one_replica_down_purchases_go_on_both_down_they_fail_cleanly(stack):
    """WAIT 1 of two replicas: one lost costs nothing; with none left every purchase is a
    503 (the reservation kept for its retry), and they go through once one is back."""
    primary = primary_port(stack)
    followers = [
        server
        for server in [stack.redis, *stack.replicas]
        if server.port != primary and server.running()
    ]
    assert len(followers) == 2, [server.port for server in followers]
    sale = stack.new_sale(stock=100, per_user_limit=2)
    buyers = stack.signup(30, prefix="replica-down-")
    followers[0].kill(signal.SIGKILL)
    answers = Burst(stack.base_url, sale, [(b, "one", 1) for b in buyers[:10]]).start().join()
    assert {a.status for a in answers} == {202}
    followers[1].kill(signal.SIGKILL)
    refused = (
        Burst(stack.base_url, sale, [(b, "two", 1) for b in buyers[10:20]], retry_for=0)
        .start()
        .join()
    )
    assert {a.status for a in refused} == {503}
    assert all(a.seconds < 10 for a in refused)
    for follower in followers:
        follower.start(30)
    retried = Burst(stack.base_url, sale, [(b, "two", 1) for b in buyers[10:20]]).start().join()
    last = {(a.user_id, a.key): a.status for a in retried}  # after the replicas resynced
    assert set(last.values()) <= {200, 202}, last
    stack.audit.audit(sale, answers + refused + retried)
