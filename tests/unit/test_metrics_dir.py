"""The run directory's metrics: one fresh multiprocess directory per `spillway up`."""

from spillway.deploy.layout import RunDir
from spillway.deploy.layout import process_environment


def test_reset_leaves_an_empty_directory(tmp_path):
    """Files a previous run left are gone; the directory exists for the new processes."""
    run_dir = RunDir(tmp_path)
    run_dir.create()
    run_dir.metrics.mkdir()
    (run_dir.metrics / "counter_1234.db").write_bytes(b"stale")
    run_dir.reset_metrics()
    assert run_dir.metrics.is_dir() and list(run_dir.metrics.iterdir()) == []


def test_every_process_gets_the_shared_directory(tmp_path):
    """gunicorn and Celery see PROMETHEUS_MULTIPROC_DIR inside the run directory."""
    environment = process_environment(RunDir(tmp_path), "INFO", {}, "http://127.0.0.1:9")
    assert environment["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path / "metrics")
