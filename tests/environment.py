"""The environment that points a spillway process (gunicorn, `spillway serve`, a Celery
worker, `spillway reconcile`) at a test's own servers."""

from pathlib import Path

ADMIN_TOKEN = "test-admin-token"


def service_environment(
    redis: str, memcached: str, database_url: str, run_dir: Path, admin_token: str = ADMIN_TOKEN
) -> dict[str, str]:
    """The app's redis (db 0) and broker (db 1) at ``redis``, memcached at ``memcached``
    (both ``host:port``), its ledger and run directory, the admin token; rate limits off,
    since tests drive the app from one address (tests/integration/security turns them on).
    """
    return {
        "SPILLWAY_REDIS_URL": f"redis://{redis}/0",
        "SPILLWAY_BROKER_URL": f"redis://{redis}/1",
        "SPILLWAY_MEMCACHED_SERVERS": memcached,
        "SPILLWAY_RUN_DIR": str(run_dir),
        "DATABASE_URL": database_url,
        "SPILLWAY_ADMIN_TOKEN": admin_token,
        "SPILLWAY_RATE_LIMITS": "off",
    }
