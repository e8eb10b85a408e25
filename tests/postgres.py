"""A throwaway PostgreSQL cluster for the suite: initdb into a temporary directory, one
`postgres` on a free loopback port, a fresh database per test, everything removed after.

PostgreSQL refuses to run as root, so under root the cluster belongs to the project's
service user (the account `spillway up` drops to).
"""

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import psycopg

from spillway.deploy.service_user import resolve_service_user
from tests.servers import Server
from tests.servers import free_port
from tests.waiting import wait_until

SUPERUSER = "spillway"
SIZES = ("max_connections=300", "shared_buffers=64MB")
# Durability off: the cluster lives as long as the test run.
FAST_AND_FORGETFUL = ("fsync=off", "synchronous_commit=off", "full_page_writes=off", *SIZES)
# What the bench measures a ledger on: as durable as the stack's SQLite ledger (WAL with
# synchronous=NORMAL: a commit does not wait for the disk, a crash loses at most the last
# few, and never corrupts). fsync and full-page writes stay on.
LIKE_THE_SQLITE_LEDGER = ("synchronous_commit=off", *SIZES)


def postgres_bindir() -> Path:
    """The newest installed server's bin directory (Debian: /usr/lib/postgresql/N/bin)."""
    found = [path.parent for path in Path("/usr/lib/postgresql").glob("*/bin/postgres")]
    if not found:
        raise RuntimeError("PostgreSQL is not installed: run the tests with `make test`")
    return max(found, key=lambda path: int(path.parent.name.split(".")[0]))


class PostgresCluster:
    """One cluster; ``create_database`` hands out an empty database and its URL."""

    def __init__(self, log_dir: Path, settings: tuple[str, ...] = FAST_AND_FORGETFUL):
        self.log_dir = log_dir
        self.settings = settings
        self.root = Path(tempfile.mkdtemp(prefix="spillway-pg-"))
        self.port = free_port()
        self.server: Server | None = None
        self.created = 0
        user = resolve_service_user()
        self.ids = {"user": user.uid, "group": user.gid, "extra_groups": []} if user else {}
        if user:
            os.chown(self.root, user.uid, user.gid)

    def initdb(self, trusted_network: str | None = None) -> None:
        """Create the cluster; ``trusted_network`` (a CIDR) may connect without a password."""
        data = self.root / "data"
        subprocess.run(
            [
                str(postgres_bindir() / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            cwd="/",
            env={"LANG": "C"},
            **self.ids,
        )
        if trusted_network:
            with open(data / "pg_hba.conf", "a") as hba:
                hba.write(f"host all all {trusted_network} trust\n")

    def argv(self, listen: str = "127.0.0.1") -> list[str]:
        """The server's command line, listening on ``listen``."""
        argv = [
            str(postgres_bindir() / "postgres"),
            "-D",
            str(self.root / "data"),
            "-k",
            str(self.root),
            "-p",
            str(self.port),
            "-h",
            listen,
        ]
        for setting in self.settings:
            argv += ["-c", setting]
        return argv

    def start(self) -> "PostgresCluster":
        self.initdb()
        # The port opens before recovery ends ("the database system is starting up"):
        # ready once it takes a query.
        self.server = Server(
            "postgres",
            self.argv(),
            self.port,
            self.log_dir,
            cwd="/",
            ready=self.accepts_connections,
            **self.ids,
        ).start(timeout=60)
        return self

    def accepts_connections(self, host: str = "127.0.0.1") -> bool:
        try:
            psycopg.connect(self.url("postgres", "postgresql", host), connect_timeout=5).close()
        except psycopg.OperationalError:
            return False
        return True

    def wait_ready(self, host: str = "127.0.0.1", timeout: float = 60.0) -> None:
        """Until the cluster takes connections on ``host`` (one started elsewhere: a test
        network's data host)."""
        wait_until(lambda: self.accepts_connections(host), timeout, what=f"postgres on {host}")

    def url(
        self, database: str, driver: str = "postgresql+psycopg", host: str = "127.0.0.1"
    ) -> str:
        return f"{driver}://{SUPERUSER}@{host}:{self.port}/{database}"

    def _admin(self) -> psycopg.Connection:
        return psycopg.connect(self.url("postgres", "postgresql"), autocommit=True)

    def create_database(self) -> str:
        """A new, empty database; returns its name."""
        self.created += 1
        name = f"test_{self.created}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def copy_database(self, source: str, target: str) -> None:
        """``target`` becomes a copy of ``source`` as it is now (a backup, or its restore):
        whatever is connected to either is disconnected first."""
        with self._admin() as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname IN (%s, %s) AND pid <> pg_backend_pid()",
                (source, target),
            )
            conn.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{target}" TEMPLATE "{source}"')

    def drop_database(self, name: str) -> None:
        """Drop it, closing whatever is still connected (a worker a test left behind)."""
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.server is not None:  # SIGINT: fast shutdown, clients or not
            self.server.kill(signal.SIGINT)
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(
    log_dir: Path, settings: tuple[str, ...] = FAST_AND_FORGETFUL
) -> PostgresCluster:
    cluster = PostgresCluster(log_dir, settings)
    try:
        return cluster.start()
    except BaseException:
        cluster.stop()
        raise
