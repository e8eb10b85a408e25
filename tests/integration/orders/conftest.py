"""Payment against a real stand-in gateway process: the app in-process and Celery workers,
all pointed at it, with a short gateway deadline and grace so that outcomes resolve in
seconds. A test picks the gateway's behaviour by parametrizing ``gateway_knobs``."""

import pytest

from tests.servers import Gateway

GATEWAY_TIMEOUT_S = "1"
PAYING_GRACE_MS = "2000"


@pytest.fixture
def gateway_knobs() -> list[str]:
    """The stand-in's command-line knobs (spillway/gateway.py): a quick, honest gateway."""
    return ["--latency", "0.05"]


@pytest.fixture
def gateway(gateway_knobs, tmp_path):
    """The stand-in gateway as a subprocess on a free port."""
    server = Gateway(tmp_path, *gateway_knobs).start()
    yield server
    server.stop()


@pytest.fixture
def service_env(service_env, gateway):
    """The suite's environment, pointed at this test's gateway, with short deadlines."""
    return {**service_env, "SPILLWAY_PAYMENT_URL": gateway.url,
            "SPILLWAY_GATEWAY_TIMEOUT_S": GATEWAY_TIMEOUT_S,
            "SPILLWAY_PAYING_GRACE_MS": PAYING_GRACE_MS}
