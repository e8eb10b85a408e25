"""Every path inside a run directory, named once: nothing else spells them by hand.

Two kinds, never mixed in one directory (SECURITY.md, "The privilege boundary"): what
root reads or writes (configs, secrets, pid files, supervisord's socket, the logs, the
parent of nginx's temp paths) is root's; the service user owns only the directories it
writes in (data, redis, sockets, metrics).
"""

from dataclasses import dataclass
from pathlib import Path

# nginx's *_temp_path directories, inside RunDir.nginx_temp (root's: nginx's master
# mkdirs each, then stat()s and chown()s it to the worker user, following links).
NGINX_TEMP_NAMES = ("body", "proxy", "fastcgi", "uwsgi", "scgi")
DATABASE_NAME = "spillway.db"
# SQLite's companions of a database file: they move with it.
DATABASE_SUFFIXES = ("", "-wal", "-shm")


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory."""

    root: Path

    # -- root's: read or written by root (supervisord, nginx's master, `spillway up`)

    @property
    def logs(self) -> Path:
        """Written by supervisord and nginx's master, as root."""
        return self.root / "logs"

    @property
    def supervisord_conf(self) -> Path:
        return self.root / "supervisord.conf"

    @property
    def nginx_conf(self) -> Path:
        return self.root / "nginx.conf"

    @property
    def redis_conf(self) -> Path:
        return self.root / "redis.conf"

    @property
    def replica_conf(self) -> Path:
        """`--redis sentinel`: the replica's redis.conf (the primary's is redis_conf)."""
        return self.root / "redis-replica.conf"

    @property
    def replication_file(self) -> Path:
        """`--redis sentinel`: its ports and password (spillway/deploy/replication.py)."""
        return self.root / "redis-sentinel.json"

    @property
    def secrets_file(self) -> Path:
        return self.root / "secrets.env"

    @property
    def urls_file(self) -> Path:
        """Where the stack answers (the banner's URLs), for `spillway status`."""
        return self.root / "urls.json"

    @property
    def supervisord_pid(self) -> Path:
        return self.root / "supervisord.pid"

    @property
    def supervisor_socket(self) -> Path:
        return self.root / "supervisor.sock"

    @property
    def nginx_pid(self) -> Path:
        return self.root / "nginx.pid"

    @property
    def up_pid(self) -> Path:
        """`spillway up`'s own pid, while it runs: what `spillway reload` signals."""
        return self.root / "up.pid"

    @property
    def reload_result(self) -> Path:
        """How the last reload went (written by `spillway up`, read by `spillway reload`)."""
        return self.root / "reload.json"

    @property
    def nginx_temp(self) -> Path:
        """The parent of nginx's temp paths (their contents are the workers')."""
        return self.root / "nginx"

    def nginx_temp_path(self, name: str) -> Path:
        return self.nginx_temp / name

    @property
    def tls(self) -> Path:
        """root's, closed: the self-signed certificate of `spillway up --tls self-signed`
        (nginx's master reads it as root, before its workers drop privileges)."""
        return self.root / "tls"

    @property
    def tls_cert(self) -> Path:
        return self.tls / "cert.pem"

    @property
    def tls_key(self) -> Path:
        return self.tls / "key.pem"

    # -- the service user's: written by the processes that run as it

    @property
    def data(self) -> Path:
        """The SQLite database and its journal files."""
        return self.root / "data"

    @property
    def database(self) -> Path:
        return self.data / DATABASE_NAME

    @property
    def redis_data(self) -> Path:
        """redis's working directory: its AOF."""
        return self.root / "redis"

    @property
    def replica_data(self) -> Path:
        """`--redis sentinel`: the second redis node's working directory."""
        return self.root / "redis-replica"

    @property
    def sentinel_data(self) -> Path:
        """`--redis sentinel`: the Sentinels' files, which they rewrite as they learn."""
        return self.root / "sentinel"

    @property
    def sockets(self) -> Path:
        """The unix sockets of redis, memcached and gunicorn."""
        return self.root / "sockets"

    @property
    def redis_socket(self) -> Path:
        return self.sockets / "redis.sock"

    @property
    def memcached_socket(self) -> Path:
        return self.sockets / "memcached.sock"

    @property
    def gunicorn_socket(self) -> Path:
        return self.sockets / "gunicorn.sock"

    @property
    def metrics(self) -> Path:
        """prometheus_client's multiprocess directory, shared by gunicorn and Celery."""
        return self.root / "metrics"

    @property
    def quarantine(self) -> Path:
        """root's, closed: where the service user's files an older layout let it leave in
        the run directory are moved (never deleted: they may be evidence)."""
        return self.root / "quarantine"

    @property
    def layout_names(self) -> frozenset[str]:
        """The names directly in the run directory that belong to the layout."""
        paths = (
            self.logs,
            self.supervisord_conf,
            self.nginx_conf,
            self.redis_conf,
            self.replica_conf,
            self.replication_file,
            self.secrets_file,
            self.urls_file,
            self.supervisord_pid,
            self.supervisor_socket,
            self.nginx_pid,
            self.up_pid,
            self.reload_result,
            self.nginx_temp,
            self.tls,
            self.data,
            self.redis_data,
            self.replica_data,
            self.sentinel_data,
            self.sockets,
            self.metrics,
            self.quarantine,
        )
        return frozenset(path.name for path in paths)

    # -- what older layouts left directly in the run directory

    @property
    def legacy_database(self) -> Path:
        return self.root / DATABASE_NAME

    @property
    def legacy_leftovers(self) -> tuple[Path, ...]:
        """Sockets and Celery beat's pickle shelve: nothing reads them any more."""
        names = (
            "redis.sock",
            "memcached.sock",
            "gunicorn.sock",
            "celerybeat-schedule",
            "celerybeat-schedule.db",
            "celerybeat-schedule.dat",
            "celerybeat-schedule.dir",
            "celerybeat-schedule.bak",
        )
        return tuple(self.root / name for name in names)
