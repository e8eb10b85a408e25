"""The flash sale's application factory: settings, extensions, blueprints, error handlers,
commands, its fast paths, and what it declares to the runtime (spillway.extension)."""

from pathlib import Path

from flask import Flask

from flashsale.auth import NoCookieSessions
from flashsale.extensions import api
from flashsale.extensions import celery
from flashsale.extensions import db
from flashsale.extensions import migrate
from flashsale.settings import load
from spillway import errors
from spillway.extension import Spillway
from spillway.settings import config_name_from_environment

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def create_app(config_name: str | None = None, overrides: dict | None = None) -> Flask:
    """Build the app for ``dev``, ``test`` or ``prd`` (by default SPILLWAY_ENV's).

    :param overrides: config values applied after the environment (tests use it).
    :raise spillway.settings.SettingsError: a missing or unsafe setting.
    """
    app = Flask(__name__, static_folder="web/static", static_url_path="/static")
    app.session_interface = NoCookieSessions()
    app.config.update(load(config_name or config_name_from_environment()))
    app.config.update(overrides or {})
    register_extensions(app)
    register_blueprints(app)
    errors.init_app(app)  # every error in the JSON error shape, never an HTML page
    register_commands(app)
    install_fast_paths(app)
    declare_to_the_runtime(app)  # last: the runtime's layers go around the fast paths
    return app


def register_extensions(app: Flask) -> None:
    """Bind every shared client to this app."""
    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR))
    celery.init_app(app)
    api.init_app(app)
    # Tasks register on the current Celery app when their module is imported.
    from flashsale.ops import tasks  # noqa: F401
    from flashsale.orders import tasks as order_tasks  # noqa: F401
    from flashsale.sales import archive  # noqa: F401
    from flashsale.sales import reconcile  # noqa: F401


def register_blueprints(app: Flask) -> None:
    """Mount each feature's blueprint."""
    from flashsale.catalog.views import bp as catalog_bp
    from flashsale.demo.views import bp as demo_bp
    from flashsale.ops.live_views import bp as live_bp
    from flashsale.ops.views import bp as pages_bp
    from flashsale.orders.views import bp as orders_bp
    from flashsale.sales.views import bp as sales_bp
    from flashsale.users.views import bp as users_bp

    app.register_blueprint(pages_bp)
    app.register_blueprint(demo_bp, url_prefix="/demo")
    api.register_blueprint(catalog_bp)
    api.register_blueprint(users_bp)
    api.register_blueprint(sales_bp)
    api.register_blueprint(orders_bp)
    api.register_blueprint(live_bp)


def register_commands(app: Flask) -> None:
    """Add the app's own CLI commands (the runtime's live on the ``spillway`` group)."""
    from flashsale.catalog.commands import seed_demo_command
    from flashsale.sales.commands import ledger_group
    from flashsale.sales.commands import reconcile_command

    app.cli.add_command(seed_demo_command)
    app.cli.add_command(reconcile_command)
    app.cli.add_command(ledger_group)


def install_fast_paths(app: Flask) -> None:
    """The shop's WSGI layers before Flask, innermost first (spillway.fastpath): profiling
    showed Flask's request machinery costing more than each one's own work."""
    from flashsale.catalog.fastpath import CachedPageFastPath
    from flashsale.sales.fastpath import PurchaseFastPath
    from flashsale.sales.stream import StreamFastPath

    for fast_path in (StreamFastPath, CachedPageFastPath, PurchaseFastPath):
        app.wsgi_app = fast_path(app, app.wsgi_app)


def declare_to_the_runtime(app: Flask) -> None:
    """What the stack must know of the shop: its pages, checks, cached pages, gateway."""
    from flashsale.catalog.cache import CACHED_ROUTE
    from flashsale.ops.checks import check_database
    from flashsale.ops.collectors import QueueCollector
    from flashsale.orders.payment import STAND_IN
    from flashsale.sales.binding import start_check

    Spillway(
        app,
        pages={"/": "index.html", "/ops": "ops.html"},
        readiness={"database": check_database},
        start_checks=(start_check,),
        cached_routes=(CACHED_ROUTE,),
        sidecars=(STAND_IN,),
        collectors=(QueueCollector,),
        links={
            "storefront": "/",
            "demo": "/demo/slow?seconds=10",
            "demo, fast": "/demo/index",
            "operator page": "/ops",
            "API docs": "/docs",
        },
    )
