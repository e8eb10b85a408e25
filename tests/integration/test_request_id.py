"""The request id without nginx: `spillway serve` (as a client straight at the app sees it)
names every request itself, keeps a valid id the client sent, and logs JSON lines that
carry it with SPILLWAY_LOG_FORMAT=json."""

import json
import os

import pytest
import requests

from tests.servers import serve_server


@pytest.fixture
def server(service_env, tmp_path):
    env = {**os.environ, **service_env, "SPILLWAY_ENV": "test", "SPILLWAY_LOG_FORMAT": "json"}
    served = serve_server(tmp_path, env, "--no-debug", "--log-level", "INFO")
    served.start()
    yield served
    served.stop(30)


def test_serve_names_each_request_and_logs_json(server):
    """No id: one is made (32 hex digits, a new one each time); a valid one is kept; an
    invalid one is replaced; the answers of errors carry one too; every log line is a
    JSON object."""
    made = [requests.get(f"{server.url}/demo/index", timeout=10) for _ in range(2)]
    ids = [answer.headers["X-Request-ID"] for answer in made]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids) and ids[0] != ids[1]
    kept = requests.get(
        f"{server.url}/demo/index", headers={"X-Request-ID": "client-chosen-1"}, timeout=10
    )
    assert kept.headers["X-Request-ID"] == "client-chosen-1"
    replaced = requests.get(f"{server.url}/demo/index", headers={"X-Request-ID": "a b"}, timeout=10)
    assert len(replaced.headers["X-Request-ID"]) == 32
    missing = requests.get(f"{server.url}/api/v1/no-such-thing", timeout=10)
    assert missing.status_code == 404 and len(missing.headers["X-Request-ID"]) == 32
    server.stop(30)
    lines = [line for line in server.log().splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # a line that is not one object fails here
    assert any(line["message"].startswith("serving test config") for line in parsed)
