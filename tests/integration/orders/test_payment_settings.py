"""The payment's two durations: a gateway call's total deadline, and the grace after an
order's deadline during which its payment may still finish; the grace must be longer."""

import os
import subprocess
import sys

import pytest

from flashsale import settings
from spillway.settings import SettingsError


def test_defaults_give_a_gateway_call_15_s_and_its_order_a_60_s_grace(monkeypatch):
    """15 s per gateway call, then 60 s after the deadline before a payment is resolved."""
    for name in ("SPILLWAY_GATEWAY_TIMEOUT_S", "SPILLWAY_PAYING_GRACE_MS"):
        monkeypatch.delenv(name, raising=False)
    config = settings.load("test")
    assert (config["GATEWAY_TIMEOUT_S"], config["PAYING_GRACE_MS"]) == (15.0, 60_000)


@pytest.mark.parametrize("timeout_s, grace_ms", [("15", "15000"), ("2.5", "1000")])
def test_a_grace_no_longer_than_a_gateway_call_is_refused(monkeypatch, timeout_s, grace_ms):
    """A grace that a gateway call can outlast would void payments still under way."""
    monkeypatch.setenv("SPILLWAY_GATEWAY_TIMEOUT_S", timeout_s)
    monkeypatch.setenv("SPILLWAY_PAYING_GRACE_MS", grace_ms)
    with pytest.raises(SettingsError, match="GRACE_MS .* must exceed SPILLWAY_GATEWAY_TIMEOUT"):
        settings.load("test")


def test_the_cli_refuses_it_in_one_line(tmp_path):
    """A process started with such settings stops with one line naming both variables."""
    env = {
        **os.environ,
        "SPILLWAY_ENV": "test",
        "SPILLWAY_RUN_DIR": str(tmp_path),
        "SPILLWAY_GATEWAY_TIMEOUT_S": "30",
        "SPILLWAY_PAYING_GRACE_MS": "20000",
    }
    result = subprocess.run(
        [sys.executable, "-m", "spillway", "routes"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1, lines
    assert "SPILLWAY_PAYING_GRACE_MS (20000)" in lines[0]
    assert "SPILLWAY_GATEWAY_TIMEOUT_S (30 s" in lines[0]
