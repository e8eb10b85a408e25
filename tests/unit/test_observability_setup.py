"""What `spillway up` prepares for metrics and Flower: a fresh multiprocess directory per
run, and loopback ports that are free."""

import socket

import pytest

from spillway.deploy.boundary import claim
from spillway.deploy.layout import StackError
from spillway.deploy.layout import process_environment
from spillway.deploy.run_dir import RunDir
from spillway.deploy.up import loopback_port


def test_reset_leaves_an_empty_directory(tmp_path):
    """Files a previous run left are gone; the directory exists for the new processes."""
    run_dir = RunDir(tmp_path / "run")
    claim(run_dir, None, move_legacy_database=False)
    (run_dir.metrics / "counter_1234.db").write_bytes(b"stale")
    claim(run_dir, None, move_legacy_database=False)
    assert run_dir.metrics.is_dir() and list(run_dir.metrics.iterdir()) == []


def test_every_process_gets_the_shared_directory(tmp_path):
    """gunicorn and Celery see PROMETHEUS_MULTIPROC_DIR inside the run directory."""
    environment = process_environment(RunDir(tmp_path), "INFO", {}, "http://127.0.0.1:9")
    assert environment["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path / "metrics")


def test_a_busy_default_port_gives_way_to_a_free_one():
    """With no port chosen, a taken default is replaced by any free loopback port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        chosen = loopback_port(0, busy, "SPILLWAY_FLOWER_PORT")
        assert chosen != busy and chosen > 0


def test_a_busy_chosen_port_stops_with_the_setting_named():
    """A port the operator chose that is taken stops `spillway up` with a clear line."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        with pytest.raises(StackError, match=f"SPILLWAY_METRICS_PORT={busy}"):
            loopback_port(busy, 9181, "SPILLWAY_METRICS_PORT")
