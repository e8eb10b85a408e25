"""Read-through caching that survives a stampede and never serves a stale read after a write.

Three rules keep it correct:

1. **Fill with ``add``, check the generation after.** A reader notes the namespace's
   generation (a redis counter) before it reads the database, fills the cache with
   ``add``, then reads the generation again; if a writer bumped it meanwhile, the reader
   deletes what it just filled. A writer commits, bumps the generation, then deletes the
   keys. Whatever the interleaving, no fill of old data outlives a write that has returned.
2. **Single flight.** Within a process, concurrent misses of one key wait for one loader;
   across processes, a short lease (memcached ``add``) lets one process load while the
   others poll the cache for its result. A cold burst costs one database read.
3. **Degrade, never fail.** A cache that is down is skipped (a warning, a counter), and the
   database answers; when the cache comes back it is used again, with no restart.
"""

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable

from spillway import counters
from spillway.clients import memcache
from spillway.clients import redis_store
from spillway.metrics import registry as metrics

log = logging.getLogger(__name__)

WARN_EVERY_SECONDS = 10.0
LEASE_SECONDS = 2
LEASE_POLL_SECONDS = 0.01


class _Throttled:
    """Log a warning at most once per interval per process, so an outage cannot flood."""

    def __init__(self):
        self._last = 0.0

    def warning(self, message: str, *args) -> None:
        now = time.monotonic()
        if now - self._last >= WARN_EVERY_SECONDS:
            self._last = now
            log.warning(message, *args)


class MemcachedStore:
    """The page tier: bytes in memcached, shared with nginx's fast path."""

    name = "memcached"

    def get(self, key: str) -> bytes | None:
        return memcache.get(key)

    def add(self, key: str, value: bytes, ttl: int) -> bool:
        return bool(memcache.add(key, value, expire=ttl, noreply=False))

    def delete_many(self, keys: list[str]) -> None:
        if keys:
            memcache.delete_many(keys, noreply=False)


class RedisStore:
    """The data tier: bytes in redis, for results the database is slow to compute."""

    name = "redis"

    def get(self, key: str) -> bytes | None:
        return redis_store.get(key)

    def add(self, key: str, value: bytes, ttl: int) -> bool:
        return bool(redis_store.set(key, value, ex=ttl, nx=True))

    def delete_many(self, keys: list[str]) -> None:
        if keys:
            redis_store.delete(*keys)


class ReadThrough:
    """A cached namespace: ``get_or_load`` to read, ``invalidate`` after a write commits."""

    def __init__(self, namespace: str, store, ttl: int, jitter: float = 0.1):
        self.namespace = namespace
        self.store = store
        self.ttl = ttl
        self.jitter = jitter
        self._generation_key = f"spillway:cache:{namespace}:generation"
        self._tracked_key = f"spillway:cache:{namespace}:tracked"
        self._inflight: dict[str, "_Flight"] = {}
        self._lock = threading.Lock()
        self._warn = _Throttled()

    def get_or_load(
        self, key: str, loader: Callable[[], bytes | None], track: bool = False
    ) -> bytes | None:
        """The cached bytes for ``key``, loading and filling on a miss.

        :param loader: reads the source of truth; None means "nothing there" (not cached).
        :param track: remember the key, so that ``invalidate`` drops it with the rest.
        """
        cached = self._get(key)
        metrics.cache_lookup(self.store.name, self.namespace, hit=cached is not None)
        if cached is not None:
            return cached
        return self._single_flight(key, lambda: self._load_and_fill(key, loader, track))

    def invalidate(self, keys: list[str] = ()) -> None:
        """Drop ``keys`` and every tracked key; call after the database commit."""
        tracked: list[str] = []
        try:
            redis_store.incr(self._generation_key)
            tracked = [k.decode() for k in redis_store.smembers(self._tracked_key)]
            if tracked:
                redis_store.srem(self._tracked_key, *tracked)
        except Exception as exc:  # the database write stands; the TTL bounds what is left
            counters.incr(f"cache.{self.namespace}.invalidation_errors")
            log.error("cache %s: could not bump the generation: %s", self.namespace, exc)
        try:
            self.store.delete_many(list(keys) + tracked)
        except Exception as exc:
            counters.incr(f"cache.{self.namespace}.invalidation_errors")
            log.error(
                "cache %s: could not delete %d keys: %s",
                self.namespace,
                len(keys) + len(tracked),
                exc,
            )

    def _single_flight(self, key: str, work: Callable[[], bytes | None]) -> bytes | None:
        with self._lock:
            flight = self._inflight.get(key)
            leader = flight is None
            if leader:
                flight = self._inflight[key] = _Flight()
        if not leader:
            return flight.wait(work)
        try:
            flight.result = work()
            return flight.result
        except Exception as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                del self._inflight[key]
            flight.done.set()

    def _load_and_fill(self, key: str, loader, track: bool) -> bytes | None:
        lease = self._take_lease(key)
        if lease is None:
            filled = self._wait_for_fill(key)
            if filled is not None:
                return filled
        try:
            # Another process may have filled and released its lease between our miss
            # and our lease: look once more before paying for a load.
            cached = self._get(key) if lease else None
            if cached is not None:
                return cached
            generation = self._generation()
            value = loader()
            counters.incr(f"cache.{self.namespace}.loads")
            if value is not None and generation is not None:
                self._fill(key, value, generation, track)
            return value
        finally:
            if lease:
                self._release_lease(key, lease)

    def _fill(self, key: str, value: bytes, generation: int, track: bool) -> None:
        ttl = max(1, int(self.ttl * (1 + random.uniform(-self.jitter, self.jitter))))
        try:
            self.store.add(key, value, ttl)
            if track:
                redis_store.sadd(self._tracked_key, key)
            if self._generation() != generation:
                self.store.delete_many([key])  # a write landed while we read: drop our copy
        except Exception as exc:
            self._cache_down(exc)

    def _get(self, key: str) -> bytes | None:
        try:
            return self.store.get(key)
        except Exception as exc:
            self._cache_down(exc)
            return None

    def _generation(self) -> int | None:
        """The namespace's generation, or None when redis is down (then nothing is filled)."""
        try:
            return int(redis_store.get(self._generation_key) or 0)
        except Exception as exc:
            self._warn.warning(
                "cache %s: generation unreadable, not filling: %s", self.namespace, exc
            )
            return None

    def _take_lease(self, key: str) -> str | None:
        token = uuid.uuid4().hex
        try:
            won = memcache.add(f"lease:{key}", token, expire=LEASE_SECONDS, noreply=False)
        except Exception:
            return ""  # no lease service: load without one (degraded, still correct)
        return token if won else None

    def _release_lease(self, key: str, token: str) -> None:
        try:
            if memcache.get(f"lease:{key}") == token.encode():
                memcache.delete(f"lease:{key}", noreply=False)
        except Exception:
            pass  # the lease expires by itself

    def _wait_for_fill(self, key: str) -> bytes | None:
        deadline = time.monotonic() + LEASE_SECONDS
        while time.monotonic() < deadline:
            time.sleep(LEASE_POLL_SECONDS)
            cached = self._get(key)
            if cached is not None:
                return cached
        return None

    def _cache_down(self, exc: Exception) -> None:
        counters.incr(f"cache.{self.namespace}.errors")
        self._warn.warning(
            "cache %s (%s) unavailable, serving from the source: %s",
            self.namespace,
            self.store.name,
            exc,
        )


class _Flight:
    """One in-progress load that other greenlets of this process wait on."""

    def __init__(self):
        self.done = threading.Event()
        self.result: bytes | None = None
        self.error: Exception | None = None

    def wait(self, fallback: Callable[[], bytes | None]) -> bytes | None:
        """The leader's result (or its error); load independently if it takes too long."""
        if not self.done.wait(timeout=LEASE_SECONDS * 2):
            return fallback()
        if self.error is not None:
            raise self.error
        return self.result
