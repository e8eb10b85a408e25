"""The application factory: settings, extensions, blueprints, error handlers, commands, logging."""

import logging
from pathlib import Path

from flask import Flask

from spillway import errors
from spillway import security
from spillway import settings
from spillway.auth import NoCookieSessions
from spillway.extensions import api
from spillway.extensions import celery
from spillway.extensions import db
from spillway.extensions import memcache
from spillway.extensions import migrate
from spillway.extensions import redis_store

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def create_app(config_name: str = "dev", overrides: dict | None = None) -> Flask:
    """Build the app for ``dev``, ``test`` or ``prd``.

    :param overrides: config values applied after the environment (tests use it).
    :raise spillway.settings.SettingsError: a missing or unsafe setting.
    """
    app = Flask(__name__, static_folder="web/static", static_url_path="/static")
    app.session_interface = NoCookieSessions()
    app.config.update(settings.load(config_name))
    app.config.update(overrides or {})
    configure_logger(app)
    register_extensions(app)
    register_blueprints(app)
    errors.init_app(app)  # every error in the JSON error shape, never an HTML page
    register_commands(app)
    security.init_app(app)  # rate limits, proxy hop, headers: outermost (SECURITY.md)
    return app


def configure_logger(app: Flask) -> None:
    """Send the app's logs to stderr at the operator's level (supervisord collects them)."""
    level = app.config["LOG_LEVEL"]
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s",
    )
    app.logger.setLevel(level)
    logging.getLogger("spillway").setLevel(level)


def register_extensions(app: Flask) -> None:
    """Bind every shared client to this app."""
    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR))
    redis_store.init_app(app)
    memcache.init_app(app)
    celery.init_app(app)
    api.init_app(app)
    # Tasks register on the current Celery app when their module is imported.
    from spillway.ops import tasks  # noqa: F401
    from spillway.sales import archive  # noqa: F401
    from spillway.sales import tasks as sale_tasks  # noqa: F401


def register_blueprints(app: Flask) -> None:
    """Mount each feature's blueprint."""
    from spillway.catalog import fastpath
    from spillway.catalog.views import bp as catalog_bp
    from spillway.demo.views import bp as demo_bp
    from spillway.metrics import install as metrics
    from spillway.ops.views import bp as ops_bp
    from spillway.orders.views import bp as orders_bp
    from spillway.sales import fastpath as purchase_fastpath
    from spillway.sales.views import bp as sales_bp
    from spillway.users.views import bp as users_bp

    app.register_blueprint(ops_bp)
    app.register_blueprint(demo_bp, url_prefix="/demo")
    api.register_blueprint(catalog_bp)
    api.register_blueprint(users_bp)
    api.register_blueprint(sales_bp)
    api.register_blueprint(orders_bp)
    fastpath.init_app(app)
    purchase_fastpath.init_app(app)
    metrics.init_app(app)  # last: its middleware measures the fast paths too


def register_commands(app: Flask) -> None:
    """Add the app-bound CLI commands (the rest live on the ``spillway`` group)."""
    from spillway.catalog.commands import seed_demo_command
    from spillway.ops.commands import check_command
    from spillway.sales.commands import ledger_group
    from spillway.sales.commands import reconcile_command

    app.cli.add_command(check_command)
    app.cli.add_command(seed_demo_command)
    app.cli.add_command(reconcile_command)
    app.cli.add_command(ledger_group)
