"""Alembic's environment for any Flask-Migrate app, so that an app's ``migrations/env.py``
is two lines (``from spillway.alembic_env import run_migrations; run_migrations()``) rather
than a copy of Flask-Migrate's template in every app.

It does what that template does: the database and metadata are the app's
(``current_app.extensions["migrate"]``), offline mode renders SQL, and an autogenerate that
finds no change writes no empty revision. The app's own loggers are kept (migrations also run
inside the app: tests, `spillway up`).
"""

import logging
from logging.config import fileConfig

from alembic import context
from flask import current_app

log = logging.getLogger("alembic.env")


def run_migrations() -> None:
    """Run the migrations Alembic was asked for, online or offline."""
    config = context.config
    fileConfig(config.config_file_name, disable_existing_loggers=False)
    migrate = current_app.extensions["migrate"]
    url = migrate.db.engine.url.render_as_string(hide_password=False)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    metadata = (
        migrate.db.metadatas[None] if hasattr(migrate.db, "metadatas") else migrate.db.metadata
    )
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    options = dict(migrate.configure_args)
    options.setdefault("process_revision_directives", _no_empty_revision(config))
    with migrate.db.engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata, **options)
        with context.begin_transaction():
            context.run_migrations()


def _no_empty_revision(config):
    def process_revision_directives(_context, _revision, directives):
        if getattr(config.cmd_opts, "autogenerate", False) and directives[0].upgrade_ops.is_empty():
            directives[:] = []
            log.info("No changes in schema detected.")

    return process_revision_directives
