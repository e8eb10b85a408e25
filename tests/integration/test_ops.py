"""/healthz and /readyz against real redis, memcached, broker and database."""

from tests.servers import start_memcached


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
    assert body == {"status": "ok", "checks": {"database": "ok", "redis": "ok",
                                               "memcached": "ok", "broker": "ok"}}


def test_readyz_names_the_dependency_that_is_down(app, client, server_logs):
    """A memcached that is down makes readyz 503 naming memcached, and recovers with it."""
    memcached = start_memcached(server_logs)
    app.config["MEMCACHED_SERVERS"] = [f"127.0.0.1:{memcached.port}"]
    assert client.get("/readyz").status_code == 200
    port = memcached.port
    memcached.kill()
    response = client.get("/readyz")
    body = response.get_json()
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert body["status"] == "unavailable"
    assert body["checks"]["memcached"].startswith("error")
    assert {body["checks"][name] for name in ("database", "redis", "broker")} == {"ok"}
    restarted = start_memcached(server_logs, port=port)
    try:
        assert client.get("/readyz").status_code == 200
    finally:
        restarted.stop()


def test_check_command_prints_each_dependency(app):
    """`spillway check` lists every dependency and exits 0 when all are up."""
    result = app.test_cli_runner().invoke(args=["check"])
    assert result.exit_code == 0, result.output
    for name in ("database", "redis", "memcached", "broker"):
        assert f"{name}" in result.output
