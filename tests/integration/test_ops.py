"""/healthz and /readyz against real redis, memcached, broker and database."""

import threading
import time

from tests.factories import admin_headers
from tests.servers import start_memcached
from tests.waiting import wait_until


def test_healthz_answers_without_dependencies(client):
    """Liveness says ok and touches nothing."""
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_reports_every_dependency_ok(client):
    """With redis, memcached, the broker and the database up, the app is ready."""
    response = client.get("/readyz")
    body = response.get_json()
    assert response.status_code == 200, body
    assert body == {
        "status": "ok",
        "checks": {"database": "ok", "redis": "ok", "memcached": "ok", "broker": "ok"},
    }


def test_readyz_says_which_dependency_is_down_and_why_only_to_the_admin(app, client, server_logs):
    """A memcached that dies turns readyz 503 within a couple of seconds (a result lives a
    second), naming memcached "unavailable" with no exception text for the public; the
    admin token sees the reason. It recovers with memcached."""
    memcached = start_memcached(server_logs)
    app.config["MEMCACHED_SERVERS"] = [f"127.0.0.1:{memcached.port}"]
    assert client.get("/readyz").status_code == 200
    port = memcached.port
    memcached.kill()
    died = time.monotonic()
    response = wait_until(
        lambda: (r := client.get("/readyz")).status_code == 503 and r, timeout=10, interval=0.05
    )
    assert time.monotonic() - died < 3.0
    assert response.headers["Retry-After"] == "1"
    assert response.get_json() == {
        "status": "unavailable",
        "checks": {"database": "ok", "redis": "ok", "memcached": "unavailable", "broker": "ok"},
    }
    for leak in ("rror", "refused", "Errno", "111", str(port)):
        assert leak not in response.get_data(as_text=True)
    admin = client.get("/readyz", headers=admin_headers()).get_json()
    assert admin["checks"]["memcached"].startswith("error: ")
    restarted = start_memcached(server_logs, port=port)
    try:
        wait_until(lambda: client.get("/readyz").status_code == 200, timeout=10)
    finally:
        restarted.stop()


def ping_calls(app) -> int:
    stats = app.extensions["redis"].info("commandstats")
    return int(stats.get("cmdstat_ping", {}).get("calls", 0))


def test_a_flood_of_readyz_costs_about_one_check_a_second(app):
    """Sixteen clients probing as fast as they can for two seconds run the checks about
    once a second (the redis check is one PING; counted by redis), not once a probe."""
    deadline = time.monotonic() + 2.0
    answers = []

    def probe():
        client = app.test_client()
        while time.monotonic() < deadline:
            answers.append(client.get("/readyz").status_code)

    before = ping_calls(app)
    started = time.monotonic()
    threads = [threading.Thread(target=probe) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - started
    pings = ping_calls(app) - before
    assert set(answers) == {200} and len(answers) > 100
    # One run a second, each up to two PINGs (redis's, the broker connection's), with room
    # for a run at either end on a loaded machine; unshared, it was 1,221 in two seconds.
    assert 1 <= pings <= 4 * (seconds + 1), (pings, len(answers), seconds)


def test_check_command_prints_each_dependency(app):
    """`spillway check` lists every dependency and exits 0 when all are up."""
    from spillway.cli import check_command

    result = app.test_cli_runner().invoke(check_command)
    assert result.exit_code == 0, result.output
    for name in ("database", "redis", "memcached", "broker"):
        assert f"{name}" in result.output
