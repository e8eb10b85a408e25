"""Payment against a real stand-in gateway process: the app in-process, Celery workers and,
for the tests that need it, gunicorn with gevent workers, all pointed at it, with a short
gateway deadline and grace so that outcomes resolve in seconds. A test picks the gateway's
behaviour by parametrizing ``gateway_knobs``, and the deadlines with ``payment_settings``."""

import os

import pytest

from tests.servers import Gateway
from tests.servers import gunicorn_server


@pytest.fixture
def gateway_knobs() -> list[str]:
    """The stand-in's command-line knobs (flashsale/gateway.py): a quick, honest gateway."""
    return ["--latency", "0.05"]


@pytest.fixture
def payment_settings() -> dict[str, str]:
    """A gateway call's total deadline and the grace after an order's deadline."""
    return {"SPILLWAY_GATEWAY_TIMEOUT_S": "1", "SPILLWAY_PAYING_GRACE_MS": "2000"}


@pytest.fixture
def gateway(gateway_knobs, tmp_path):
    """The stand-in gateway as a subprocess on a free port."""
    server = Gateway(tmp_path, *gateway_knobs).start()
    yield server
    server.stop()


@pytest.fixture
def service_env(service_env, gateway, payment_settings):
    """The suite's environment, pointed at this test's gateway, with short deadlines."""
    return {**service_env, "SPILLWAY_PAYMENT_URL": gateway.url, **payment_settings}


@pytest.fixture
def web(app, service_env, tmp_path):
    """gunicorn with gevent workers, as deployed, on this test's servers (the database is
    migrated by ``app``); ``web.url`` is its base URL."""
    env = {**os.environ, **service_env, "SPILLWAY_ENV": "test"}
    server = gunicorn_server(
        tmp_path, env, "--graceful-timeout", "5", "--error-logfile", "-", ready_path="/readyz"
    ).start(60)
    yield server
    server.stop()
