"""The ledger (the database DATABASE_URL names) copied out of a running stack and back.

SQLite: the online backup API (``sqlite3.Connection.backup``, in one step): one read
transaction, so the copy is the database at one instant while the stack keeps writing.
PostgreSQL: ``pg_dump --format=custom`` (one snapshot transaction) and, back,
``pg_restore --single-transaction`` into an empty database, so a restore that fails
leaves nothing half-made.
"""

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.exc import SQLAlchemyError

from spillway.deploy.files import copy_as_new
from spillway.deploy.files import is_single_regular_file
from spillway.deploy.files import lstat_or_none
from spillway.deploy.layout import SEARCH_PATH
from spillway.deploy.layout import StackError
from spillway.failures import cause
from spillway.failures import hide_password

DUMP_SECONDS = 3600
SQLITE_BUSY_SECONDS = 30


def kind_of(url: str) -> str:
    """``sqlite`` or ``postgresql``.

    :raise StackError: any other database (no way to back it up here).
    """
    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        raise StackError(f"DATABASE_URL={hide_password(url)}: not a database URL") from None
    if backend not in ("sqlite", "postgresql"):
        raise StackError(f"DATABASE_URL={hide_password(url)}: cannot back up a {backend} database")
    return backend


def sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise StackError(f"DATABASE_URL={url}: not a database file")
    return Path(database)


def dump(url: str, target: Path) -> None:
    """The database at ``url``, written to ``target``.

    :raise StackError: it could not be read.
    """
    if kind_of(url) == "sqlite":
        _dump_sqlite(sqlite_path(url), target)
    else:
        _run_pg("pg_dump", url, "--format=custom", f"--file={target}")


def load(url: str, source: Path, owner: tuple[int, int] | None) -> None:
    """``source`` (what :func:`dump` wrote) into the database at ``url``: a SQLite file
    that must not exist yet (then ``owner``'s), or an empty PostgreSQL database.

    :raise StackError: it is not empty, or the load failed.
    """
    if kind_of(url) == "sqlite":
        path = sqlite_path(url)
        copy_as_new(source, path, 0o600, owner)
    else:
        _run_pg("pg_restore", url, "--single-transaction", "--exit-on-error", str(source))


def holds_data(url: str) -> str | None:
    """What the database at ``url`` already holds that a restore would overwrite, or None.

    :raise StackError: it cannot be asked.
    """
    if kind_of(url) == "sqlite":
        path = sqlite_path(url)
        return f"{path} exists" if path.exists() else None
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            tables = inspect(connection).get_table_names()
    except SQLAlchemyError as exc:
        raise StackError(f"DATABASE_URL={hide_password(url)}: {cause(exc)}") from None
    finally:
        engine.dispose()
    return f"the database has {len(tables)} table(s)" if tables else None


def _dump_sqlite(path: Path, target: Path) -> None:
    # The service user's directory: a link there is not followed by root (SECURITY.md).
    info = lstat_or_none(path)
    if info is None or not is_single_regular_file(info):
        raise StackError(f"no database file at {path} (missing, or not a regular file)")
    source = sqlite3.connect(path, timeout=SQLITE_BUSY_SECONDS)
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)  # pages=-1: every page in one step, one read transaction
    except sqlite3.Error as exc:
        raise StackError(f"could not copy {path}: {exc}") from None
    finally:
        copy.close()
        source.close()


def _run_pg(program: str, url: str, *args: str) -> None:
    """pg_dump or pg_restore on the database at ``url``; its password in the environment,
    never on a command line others can read."""
    binary = shutil.which(program, path=SEARCH_PATH)
    if binary is None:
        raise StackError(f"{program} is not installed (apt-get install postgresql-client)")
    parsed = make_url(url)
    env = {**os.environ}
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    libpq = parsed.set(drivername="postgresql", password=None).render_as_string()
    result = subprocess.run(
        [binary, f"--dbname={libpq}", "--no-owner", "--no-privileges", *args],
        capture_output=True,
        text=True,
        timeout=DUMP_SECONDS,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        said = " ".join(result.stderr.split()) or f"exit {result.returncode}"
        raise StackError(f"{program} on DATABASE_URL={hide_password(url)}: {said}")
