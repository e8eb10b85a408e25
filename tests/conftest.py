"""Fixtures: real redis and memcached on free loopback ports for the whole run, and an app
bound to them with its own SQLite database for each test."""

import os

import pytest
from flask_migrate import upgrade

from flashsale.app import create_app
from flashsale.extensions import db
from tests.environment import service_environment
from tests.postgres import start_postgres
from tests.servers import WorkerProcess
from tests.servers import start_memcached
from tests.servers import start_redis


@pytest.fixture(scope="session")
def server_logs(tmp_path_factory):
    """Where the servers the suite starts write their logs."""
    return tmp_path_factory.mktemp("server-logs")


@pytest.fixture(scope="session")
def redis_server(server_logs):
    """A real redis-server for the whole run."""
    server = start_redis(server_logs)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def memcached_server(server_logs):
    """A real memcached for the whole run."""
    server = start_memcached(server_logs)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def database_server(server_logs):
    """The ledger's server: SPILLWAY_TEST_DB=postgresql starts a throwaway PostgreSQL
    cluster for the run; the default, sqlite, needs none (a file per test)."""
    kind = os.environ.get("SPILLWAY_TEST_DB", "sqlite")
    if kind not in ("sqlite", "postgresql"):
        raise pytest.UsageError(f"SPILLWAY_TEST_DB={kind!r}: choose sqlite or postgresql")
    if kind == "sqlite":
        yield None
        return
    cluster = start_postgres(server_logs)
    yield cluster
    cluster.stop()


@pytest.fixture
def database_url(database_server, tmp_path):
    """An empty database for one test: a SQLite file, or a fresh PostgreSQL database."""
    if database_server is None:
        yield f"sqlite:///{tmp_path / 'spillway.db'}"
        return
    name = database_server.create_database()
    yield database_server.url(name)
    database_server.drop_database(name)


@pytest.fixture
def service_env(redis_server, memcached_server, database_url, tmp_path):
    """Environment variables that point a spillway process at this run's servers."""
    return service_environment(
        f"127.0.0.1:{redis_server.port}",
        f"127.0.0.1:{memcached_server.port}",
        database_url,
        tmp_path / "run",
    )


@pytest.fixture
def app(service_env, monkeypatch):
    """The app in `test` config, on real redis, memcached and a fresh, migrated database."""
    for name, value in service_env.items():
        monkeypatch.setenv(name, value)
    app = create_app("test")
    with app.app_context():
        upgrade()
        app.extensions["redis"].flushall()
        app.extensions["memcache"].flush_all()
        yield app
        app.extensions["memcache"].close()
        app.extensions["redis"].close()
        db.session.remove()  # give its connection back first, so dispose closes it
        db.engine.dispose()


@pytest.fixture
def client(app):
    """A test client for the app."""
    return app.test_client()


@pytest.fixture
def start_worker(service_env, tmp_path):
    """Start Celery worker processes on this test's redis and database; all stopped after.

    They run as the suite's own user so that they can write the test's SQLite file; that
    deployed workers never run as root is proven end to end (tests/e2e) and by
    tests/integration/test_celery_worker.py.
    """
    started = []
    env = {
        **os.environ,
        **service_env,
        "SPILLWAY_ENV": "test",
        "SPILLWAY_LOG_LEVEL": "INFO",
        "SPILLWAY_OUTBOX_STUCK_MS": "2000",
    }

    def start(beat: bool = True, user: int | None = None, ready: bool = False) -> WorkerProcess:
        """``ready``: return once the worker consumes (a test whose deadlines of a few
        seconds must not be spent on the worker's boot); else at once."""
        worker = WorkerProcess(env, tmp_path / f"worker-{len(started)}.log", beat, user)
        started.append(worker)
        worker.start()
        if ready:
            worker.wait_for_log(" ready.", 60)
        return worker

    yield start
    for worker in started:
        worker.stop()
