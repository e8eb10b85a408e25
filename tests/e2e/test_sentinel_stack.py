"""`spillway up --redis sentinel`: the stack runs redis as a primary, a replica and three
Sentinels on loopback ports, all behind one generated password, the app and Celery finding
the primary through the Sentinels and every purchase waiting for the replica.

The primary is SIGKILLed mid-burst, and supervisord starts it again at once: before the
Sentinels have noticed, with its own AOF (spillway/deploy/redis_node.py). The replica is
promoted, clients meanwhile get clean 503s, every 202 is exactly one order, nothing is
oversold, the books balance, and the old primary is back as the new one's replica."""

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from spillway.deploy import replication
from tests import sentinels
from tests.audit import promised_orders
from tests.e2e.conftest import running_stack
from tests.e2e.promises import uid_of
from tests.faults.burst import Burst
from tests.faults.burst import plan
from tests.spillway_up import beside
from tests.waiting import wait_until

NODES = ("redis", "redis-replica")
SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")


@pytest.fixture(scope="module")
def stack():
    with running_stack(args=("--web-workers", "2", "--seed-demo", "--redis", "sentinel")) as up:
        yield up


def test_every_node_and_sentinel_asks_for_the_password_and_runs_unprivileged(stack):
    kept = replication.load(stack.paths)
    for port in (*kept.nodes, *kept.sentinels):
        with socket.create_connection(("127.0.0.1", port), timeout=2) as unauthenticated:
            unauthenticated.sendall(b"PING\r\n")
            assert unauthenticated.recv(100).startswith(b"-NOAUTH"), port
        assert sentinels.ask(port, kept.password, "PING")
    pids = stack.program_pids()
    for program in (*NODES, *SENTINELS):
        assert uid_of(pids[program]) != 0, program
    # The password is in no file the service user could not already read but root's own,
    # and in no command line anyone can read.
    assert kept.password not in stack.paths.redis_conf.read_text()
    for program in (*NODES, *SENTINELS):
        command_line = Path(f"/proc/{pids[program]}/cmdline").read_bytes()
        assert kept.password.encode() not in command_line, program
    assert os.stat(stack.paths.replication_file).st_mode & 0o777 == 0o600


def test_operator_commands_find_the_primary_through_the_sentinels(stack, tmp_path):
    checked = beside(stack, "check", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "redis      ok" in checked.stdout and "broker     ok" in checked.stdout
    backup = beside(stack, "backup", str(tmp_path / "backup"), cwd=tmp_path)
    assert backup.returncode == 0, backup.stdout + backup.stderr
    assert (tmp_path / "backup" / "redis.rdb").stat().st_size > 0


def test_primary_killed_mid_burst_comes_back_as_a_replica_and_no_202_is_lost(stack):
    kept = replication.load(stack.paths)
    environment = stack.environment()
    assert environment["SPILLWAY_REDIS_DURABILITY"] == "replica"
    old = sentinels.primary_port(kept.sentinels, kept.password)
    assert old == kept.nodes[0]
    sale = stack.new_sale(stock=150, per_user_limit=2)
    buyers = stack.signup(120, prefix="sentinel-")
    burst = Burst(stack.base_url, sale, plan(buyers, replays=30), threads=16).start()
    burst.wait_progress(0.3)
    given_before = promised_orders(list(burst.purchase_answers()))
    os.kill(stack.program_pid("redis"), signal.SIGKILL)  # supervisord restarts it at once
    killed_at = time.monotonic()
    wait_until(
        lambda: sentinels.primary_port(kept.sentinels, kept.password),
        60,
        0.1,
        until=lambda port: port not in (None, old),
    )
    switch_seconds = time.monotonic() - killed_at
    answers = burst.join()
    assert {a.status for a in answers} <= {200, 202, 409, 503}, {a.status for a in answers}
    outage = [a for a in answers if a.status == 503]
    assert all(a.seconds < 10 for a in outage), "a 503 came only after a hang"
    last = {(a.user_id, a.key): a.status for a in burst.purchase_answers()}
    assert 503 not in last.values(), "every buyer was served once the replica took over"
    figures = stack.sale_audit().audit(
        sale, answers
    )  # every 202 one order, no oversell, reconciled
    assert figures.orders_lost == 0 and figures.oversold_units == 0
    assert set(given_before) <= set(promised_orders(answers))
    print(  # the closing note's figures (pytest -s, or the captured output of a failure)
        f"sentinel stack: {len(answers)} answers, {figures.accepted} 202s "
        f"({len(given_before)} before the kill), {len(outage)} 503s, switch "
        f"{switch_seconds:.1f} s, lost {figures.orders_lost}, oversold {figures.oversold_units}"
    )
    sentinels.wait_following(old, kept.sentinels, kept.password)
