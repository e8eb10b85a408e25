"""Every error is the API's JSON shape; a dependency that is down is a 503, not a 500."""

import pytest

from spillway.extensions import redis_store


@pytest.mark.parametrize("method, path, status, code", [
    ("GET", "/no/such/path", 404, "not_found"),
    ("POST", "/healthz", 405, "method_not_allowed"),
    ("GET", "/demo/slow?seconds=61", 400, "invalid_request"),
    ("GET", "/demo/slow?seconds=-1", 400, "invalid_request"),
    ("GET", "/demo/slow?seconds=nan", 400, "invalid_request"),
    ("GET", "/demo/slow?seconds=ten", 400, "invalid_request"),
])
def test_errors_are_json(client, method, path, status, code):
    """Unknown paths, wrong methods and bad arguments answer JSON with a code."""
    response = client.open(path, method=method)
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert response.get_json()["error"]["code"] == code
    assert response.get_json()["error"]["message"]


def test_method_not_allowed_says_what_is(client):
    """A 405 carries the Allow header."""
    response = client.post("/healthz")
    assert "GET" in response.headers["Allow"]


def test_oversized_body_is_413_json(client):
    """A body over 64 KiB is refused as JSON."""
    response = client.post("/healthz", data=b"x" * (64 * 1024 + 1),
                           content_type="application/json")
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"


def test_unexpected_exception_is_json_500_without_traceback(app, client):
    """A bug answers a JSON 500 that leaks nothing."""

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret detail")

    response = client.get("/boom")
    assert response.status_code == 500
    assert response.get_json()["error"]["code"] == "internal_error"
    assert "secret detail" not in response.get_data(as_text=True)


def test_redis_down_is_503_with_retry_after(app, client):
    """A request whose redis is unreachable gets 503 unavailable and Retry-After."""
    from tests.servers import free_port

    app.config["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    redis_store.init_app(app)

    @app.get("/needs-redis")
    def needs_redis():
        return {"value": redis_store.get("x")}

    response = client.get("/needs-redis")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.get_json()["error"]["code"] == "unavailable"


def test_demo_index_and_quick_slow(client):
    """The demo answers plain text; seconds=0 returns at once."""
    assert client.get("/demo/index").get_data(as_text=True) == "Beijing"
    assert client.get("/demo/slow?seconds=0").get_data(as_text=True) == "Hello World!"
