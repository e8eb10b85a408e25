"""The start-up audit with the real drivers: a gevent worker that imported psycopg2 with no
wait callback refuses to start, in one line naming the module and the cure; once psycogreen
patched it, the same app serves."""

from tests.integration.guards import processes
from tests.servers import Server

CURE = "call psycogreen.gevent.patch_psycopg() before the app connects"


def refused_log(served: Server) -> str:
    """The log of a server that must exit non-zero by itself, without a traceback."""
    try:
        assert served.exit_code() != 0
    finally:
        served.stop()
    log = served.log()
    assert "Traceback" not in log, log
    return log


def test_gunicorn_refuses_psycopg2_without_psycogreen(service_env, tmp_path):
    """gunicorn's worker fails to boot, the master exits, and the log says why in one line."""
    log = refused_log(
        processes.gunicorn(
            processes.app_env(service_env, "create_psycopg2_app"),
            tmp_path / "gunicorn.log",
            wait=False,
        )
    )
    refusals = [line for line in log.splitlines() if "refuses to start" in line]
    assert refusals and all(
        "psycopg2 is imported with no wait callback" in line and CURE in line for line in refusals
    ), log


def test_serve_refuses_psycopg2_without_psycogreen(service_env, tmp_path):
    """`spillway serve` exits non-zero with the same line, no traceback."""
    log = refused_log(
        processes.serve(
            processes.app_env(service_env, "create_psycopg2_app"),
            tmp_path / "serve.log",
            wait=False,
        )
    )
    assert "serve worker refuses to start: psycopg2 is imported" in log and CURE in log, log


def test_psycopg2_patched_by_psycogreen_serves(service_env, tmp_path):
    """With psycogreen's wait callback the worker starts and answers."""
    served = processes.gunicorn(
        processes.app_env(service_env, "create_green_psycopg2_app"), tmp_path / "gunicorn.log"
    )
    try:
        assert served.get("/healthz").status_code == 200
    finally:
        served.stop()
    assert "refuses to start" not in served.log()
