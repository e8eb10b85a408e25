"""/metrics under gunicorn (two gevent workers) and a Celery worker, all writing to one
PROMETHEUS_MULTIPROC_DIR: what every process recorded is summed in one scrape."""

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.multiprocess import MultiProcessCollector

from spillway.metrics.registry import LATENCY_BUCKETS
from tests.factories import admin_headers
from tests.factories import make_product
from tests.integration.metrics.scrape import sample_sum
from tests.servers import Server
from tests.servers import gunicorn_server
from tests.waiting import wait_until

LATENCY = "spillway_http_request_duration_seconds"
PURCHASE_ROUTE = "/api/v1/sales/<sale_id>/orders"


@pytest.fixture
def service_env(service_env, tmp_path):
    """Every process of the test shares one multiprocess directory, as under `spillway up`."""
    shared = tmp_path / "prometheus"
    shared.mkdir()
    return {**service_env, "PROMETHEUS_MULTIPROC_DIR": str(shared)}


@pytest.fixture
def shared_dir(service_env) -> Path:
    return Path(service_env["PROMETHEUS_MULTIPROC_DIR"])


@pytest.fixture
def gunicorn(app, service_env, tmp_path):
    """gunicorn with two gevent workers and the stack's hooks, on a loopback port."""
    env = {**os.environ, **service_env, "SPILLWAY_ENV": "test", "SPILLWAY_LOG_LEVEL": "WARNING"}
    server = gunicorn_server(tmp_path, env, "--config", "python:spillway.metrics.gunicorn_conf")
    server.start(timeout=60)
    wait_until(lambda: len(worker_pids(server)) == 2)
    yield server
    server.stop()


def worker_pids(server: Server) -> list[int]:
    pid = server.process.pid
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def scrape(server: Server) -> str:
    response = requests.get(f"{server.url}/metrics", timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return response.text


def open_sale(session, server: Server, product, stock: int) -> dict:
    """An active sale of ``product``, created through the server (admin)."""
    return session.post(
        f"{server.url}/api/v1/sales",
        headers=admin_headers(),
        timeout=30,
        json={
            "product_id": str(product.id),
            "stock": stock,
            "per_user_limit": 1,
            "ends_at": "2999-01-01T00:00:00Z",
        },
    ).json()


def buy_through(session, server: Server, sale: dict, name: str) -> requests.Response:
    """A new buyer ``name`` buys one unit through the server."""
    token = session.post(f"{server.url}/api/v1/users", json={"name": name}, timeout=30).json()[
        "token"
    ]
    return session.post(
        f"{server.url}/api/v1/sales/{sale['id']}/orders",
        json={"quantity": 1},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def slow_requests_counted_by(shared: Path, pid: int) -> float:
    """What one worker's own file says about /demo/slow."""
    path = shared / f"histogram_{pid}.db"
    if not path.exists():
        return 0.0
    return sum(
        s.value
        for metric in MultiProcessCollector.merge([str(path)])
        for s in metric.samples
        if s.name == f"{LATENCY}_count" and s.labels["route"] == "/demo/slow"
    )


def test_one_scrape_sums_both_workers(gunicorn, shared_dir):
    """Requests served by either worker all appear, once, in any scrape."""
    pids = worker_pids(gunicorn)
    assert len(pids) == 2
    sent = 0
    with ThreadPoolExecutor(max_workers=40) as pool:
        for _ in range(10):  # until each worker has served some (the kernel picks)
            answers = list(
                pool.map(
                    lambda _: requests.get(f"{gunicorn.url}/demo/slow?seconds=0.2", timeout=30),
                    range(40),
                )
            )
            assert all(a.status_code == 200 for a in answers)
            sent += len(answers)
            if all(slow_requests_counted_by(shared_dir, pid) for pid in pids):
                break
    per_worker = [slow_requests_counted_by(shared_dir, pid) for pid in pids]
    assert all(per_worker), f"one worker served nothing: {per_worker}"
    assert sum(per_worker) == sent
    text = scrape(gunicorn)
    assert sample_sum(text, f"{LATENCY}_count", route="/demo/slow", status="200") == sent
    assert sample_sum(text, f"{LATENCY}_sum", route="/demo/slow") >= sent * 0.2


def test_purchases_cache_hits_and_buckets(gunicorn):
    """Purchases by outcome, memcached hits and the latency buckets, through gunicorn."""
    session = requests.Session()
    product = make_product()
    sale = open_sale(session, gunicorn, product, stock=1)
    answers = [buy_through(session, gunicorn, sale, name).status_code for name in ("ann", "ben")]
    assert answers == [202, 409]
    for _ in range(3):
        assert (
            session.get(f"{gunicorn.url}/api/v1/products/{product.id}", timeout=30).status_code
            == 200
        )
    text = scrape(gunicorn)
    assert sample_sum(text, "spillway_reservations_total", outcome="admitted") == 1
    assert sample_sum(text, "spillway_reservations_total", outcome="sold_out") == 1
    assert sample_sum(text, "spillway_cache_hits_total", tier="memcached") >= 2
    assert sample_sum(text, "spillway_cache_misses_total", tier="memcached") >= 1
    buckets = {
        s
        for s in text.splitlines()
        if s.startswith(f"{LATENCY}_bucket{{")
        and f'route="{PURCHASE_ROUTE}"' in s
        and 'status="202"' in s
    }
    bounds = {line.split('le="')[1].split('"')[0] for line in buckets}
    assert bounds == {str(b) for b in LATENCY_BUCKETS} | {"+Inf"}
    assert sample_sum(text, f"{LATENCY}_bucket", route=PURCHASE_ROUTE, le="+Inf") == 2


def test_a_dead_workers_counts_stay_and_its_live_gauges_go(gunicorn, shared_dir):
    """child_exit marks a dead worker: its live gauges are removed, its counts still add up."""
    for _ in range(20):
        requests.get(f"{gunicorn.url}/healthz", timeout=10)
    before = sample_sum(scrape(gunicorn), f"{LATENCY}_count", route="/healthz")
    victim = worker_pids(gunicorn)[0]
    live_gauge = shared_dir / f"gauge_livesum_{victim}.db"
    live_gauge.write_bytes(b"")  # what a live gauge of that worker would have left
    os.kill(victim, 9)
    wait_until(lambda: victim not in worker_pids(gunicorn) and len(worker_pids(gunicorn)) == 2)
    wait_until(lambda: not live_gauge.exists())
    after = sample_sum(scrape(gunicorn), f"{LATENCY}_count", route="/healthz")
    assert after >= before >= 20
    assert "Traceback" not in gunicorn.log_path.read_text()


def test_celery_task_durations_and_the_drain(app, gunicorn, start_worker):
    """A real worker's task durations, and the orders it persisted, show in the web's scrape;
    /ops lists the gevent workers' hubs and the Celery worker's last ping."""
    session = requests.Session()
    sale = open_sale(session, gunicorn, make_product(), stock=5)
    for name in ("cat", "dan"):
        assert buy_through(session, gunicorn, sale, name).status_code == 202
    assert sample_sum(scrape(gunicorn), "spillway_outbox_entries") == 2
    worker = start_worker(beat=True)
    app.extensions["celery"].send_task(
        "flashsale.ops.tasks.mark", args=["spillway:smoke:metrics", "ok"]
    )

    def drained():
        text = scrape(gunicorn)
        return (
            sample_sum(text, "spillway_orders_persisted_total") == 2
            and sample_sum(text, "spillway_outbox_entries") == 0
            and sample_sum(
                text,
                "spillway_celery_task_duration_seconds_count",
                task="flashsale.ops.tasks.mark",
                state="success",
            )
            == 1
            and text
        )

    text = wait_until(drained, timeout=60)
    assert (
        sample_sum(
            text,
            "spillway_celery_task_duration_seconds_count",
            task="flashsale.orders.tasks.drain_outbox",
            state="success",
        )
        >= 1
    )
    assert sample_sum(text, "spillway_redis_up") == 1
    assert "Traceback" not in worker.log(), worker.log()[-3000:]
    live = session.get(
        f"{gunicorn.url}/api/v1/ops/live", headers=admin_headers(), timeout=30
    ).json()
    assert live["orders_persisted"] == 2 and live["admitted"] == 2
    # The guards on /ops: each gevent worker's hub (none blocked), the worker's last ping.
    assert sorted(worker["pid"] for worker in live["hub"]) == sorted(worker_pids(gunicorn))
    assert {(worker["server"], worker["blocks"]) for worker in live["hub"]} == {("gunicorn", 0)}
    [celery_worker] = wait_until(
        lambda: session.get(
            f"{gunicorn.url}/api/v1/ops/live",
            headers=admin_headers(),
            timeout=30,
        ).json()["celery_workers"],
        timeout=30,
    )  # its first ping, SPILLWAY_WORKER_PING_S in
    assert celery_worker["rtt_s"] < 5 and not celery_worker["silent"]


def test_a_celery_child_that_exits_drops_its_live_gauges(app, shared_dir, start_worker):
    """A prefork child marks itself dead on its way out (worker_process_shutdown)."""
    worker = start_worker(beat=False)
    pid = worker.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children")
    child = int(wait_until(lambda: children.read_text().split())[0])
    live_gauge = shared_dir / f"gauge_livesum_{child}.db"
    live_gauge.write_bytes(b"")
    worker.stop()  # SIGTERM: a warm shutdown, each child exits by itself
    assert not live_gauge.exists(), worker.log()[-3000:]
