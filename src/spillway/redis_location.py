"""Where the runtime's redis is: one address, or a primary that Redis Sentinel names.

``SPILLWAY_REDIS_URL`` is a redis-py URL (``redis://host:port/0``, ``unix:///path?db=0``)
or, to follow a primary through failovers, the Sentinel form that Flask-Limiter's
``limits`` also reads::

    redis+sentinel://[:password@]host:port[,host:port...]/master-name[/db]

The one password is the primary's and the Sentinels' both (``requirepass`` on each), as
``limits`` reads such a URL: `spillway up --redis sentinel` sets it so.

Every client of the runtime's redis is made here from that one setting, so that the app's
commands, the rate limiter, Celery's broker (kombu's ``sentinel://`` transport) and beat
(redbeat's ``redis-sentinel`` form) all find the same primary, and all ask the Sentinels
again once it is gone.
"""

from dataclasses import dataclass
from urllib.parse import quote
from urllib.parse import unquote
from urllib.parse import urlsplit

import redis
from redis.sentinel import Sentinel
from redis.sentinel import SentinelConnectionPool

SCHEME = "redis+sentinel"
DEFAULT_SENTINEL_PORT = 26379


class BlockingSentinelPool(SentinelConnectionPool, redis.BlockingConnectionPool):
    """A Sentinel-managed pool that makes a greenlet wait for a free connection rather
    than raise past its cap (as the runtime's plain pool does: spillway.clients)."""


@dataclass(frozen=True)
class SentinelAddress:
    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    password: str | None = None

    def client(self, max_connections: int, **options) -> redis.Redis:
        """A client of the current primary, asking the Sentinels again after a failover."""
        sentinel = Sentinel(
            list(self.sentinels),
            sentinel_kwargs={
                "socket_timeout": options.get("socket_timeout", 1.0),
                **self.sentinel_auth(),
            },
            password=self.password,
            **options,
        )
        return sentinel.master_for(
            self.master,
            connection_pool_class=BlockingSentinelPool,
            db=self.db,
            max_connections=max_connections,
            timeout=options.get("socket_timeout", 2.0),
        )

    def url(self) -> str:
        """This address in the runtime's own spelling (SPILLWAY_REDIS_URL's)."""
        return f"{self._without_db()}/{self.db}"

    def _without_db(self) -> str:
        hosts = ",".join(f"{host}:{port}" for host, port in self.sentinels)
        return f"{SCHEME}://{self._auth()}{hosts}/{quote(self.master, safe='')}"

    def _auth(self) -> str:
        return f":{quote(self.password, safe='')}@" if self.password else ""

    def kombu_url(self, db: int) -> str:
        """kombu's spelling: ``sentinel://[:pw@]host:port/db;sentinel://...``; the master's
        name goes in the transport options (:meth:`transport_options`)."""
        auth = self._auth()
        return ";".join(f"sentinel://{auth}{host}:{port}/{db}" for host, port in self.sentinels)

    def sentinel_auth(self) -> dict:
        """What a client says to the Sentinels themselves (nothing without a password)."""
        return {"password": self.password} if self.password else {}

    def transport_options(self) -> dict:
        return {"master_name": self.master, "sentinel_kwargs": self.sentinel_auth()}

    def limits_storage(self) -> tuple[str, dict]:
        """Flask-Limiter's URI and options: ``limits`` takes the whole path for the
        master's name, so the database goes in the options."""
        return self._without_db(), {"db": self.db}

    def redbeat_options(self, db: int) -> tuple[str, dict]:
        """redbeat's URL and options for the primary's database ``db``."""
        return "redis-sentinel://", {
            "sentinels": list(self.sentinels),
            "service_name": self.master,
            "db": db,
            "password": self.password,
            "sentinel_kwargs": self.sentinel_auth(),
        }


def sentinel_address(url: str) -> SentinelAddress | None:
    """The Sentinels and master named by ``url``, or None for a plain redis URL.

    :raise ValueError: a Sentinel URL without a master name, or with a bad port or db.
    """
    parts = urlsplit(url)
    if parts.scheme != SCHEME:
        return None
    auth, _, hosts = parts.netloc.rpartition("@")
    password = unquote(auth.partition(":")[2]) if auth else None
    path = [part for part in parts.path.split("/") if part]
    if not hosts or not path:
        raise ValueError(f"{SCHEME}:// needs host:port[,host:port...]/master-name: {url!r}")
    sentinels = []
    for member in hosts.split(","):
        host, _, port = member.rpartition(":") if ":" in member else (member, "", "")
        if not port.isdigit() and port:
            raise ValueError(f"not a Sentinel port: {member!r}")
        sentinels.append((host, int(port) if port else DEFAULT_SENTINEL_PORT))
    db = path[1] if len(path) > 1 else "0"
    if not db.isdigit():
        raise ValueError(f"not a redis database number: {db!r}")
    return SentinelAddress(tuple(sentinels), unquote(path[0]), int(db), password or None)


def connect(url: str, max_connections: int = 50, **options) -> redis.Redis:
    """A client of the redis ``url`` names, with a blocking pool of ``max_connections``:
    the current primary when it names Sentinels."""
    sentinels = sentinel_address(url)
    if sentinels:
        return sentinels.client(max_connections, **options)
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=options.get("socket_timeout", 2.0), **options
    )
    return redis.Redis(connection_pool=pool)
