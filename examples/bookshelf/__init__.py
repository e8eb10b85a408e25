"""Bookshelf: the app of the tutorial (docs/your-app.md), on Spillway.

A blueprint with a slow endpoint and a fast one, a Celery task, a read cached in
memcached (answered by nginx itself once cached), and a migration. Run it on the whole
stack with ``SPILLWAY_APP=bookshelf:create_app PYTHONPATH=examples make run``.
"""

import os
from pathlib import Path

from flask import Flask
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

from spillway import Spillway
from spillway.celery_app import FlaskCelery
from spillway.celery_app import base_config

db = SQLAlchemy()
migrate = Migrate()
celery = FlaskCelery()


def create_app() -> Flask:
    """The bookshelf, configured from the environment `spillway up` gives its processes."""
    app = Flask(__name__)
    app.config.update(
        SQLALCHEMY_DATABASE_URI=os.environ.get("DATABASE_URL", "sqlite:///bookshelf.db"),
        CELERY=base_config(os.environ.get("SPILLWAY_BROKER_URL", "redis://127.0.0.1:6379/1")),
    )
    db.init_app(app)
    migrate.init_app(app, db, directory=str(Path(__file__).parent / "migrations"))
    celery.init_app(app)

    from bookshelf import books

    app.register_blueprint(books.bp)
    # Last: what the app asks of the stack, and the runtime's layers around it all.
    Spillway(app, cached_routes=[books.CACHED_ROUTE], links={"a book": "/books/1"})
    return app
