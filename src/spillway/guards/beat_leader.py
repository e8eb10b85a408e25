"""Beat without a single point of failure: celery-redbeat's scheduler, made to outlive a
redis outage.

redbeat keeps the schedule and a leader lock in redis, so a beat may run on every worker
host: the one holding the lock ticks and extends it, the others wait on it and take over
within its timeout once the leader dies (spillway.celery_app.base_config, docs/guards.md).
As shipped, though, a beat that finds redis down ends: at start (loading the schedule),
when its lock cannot be taken (redbeat's ``beat_init`` hook fails, and its next tick has
no lock to extend), or at any tick. Under supervisord a process that ends within
``startsecs`` a few times is given up for good; embedded in a worker (``-B``) it is never
started again. The in-memory scheduler it replaces rode through outages. Here:

- the schedule is loaded once redis answers, however long that takes;
- a tick that meets a redis error logs one line and is tried again shortly;
- a tick with no lock (redis was down at start) or that lost it (it expired while redis
  or this process was away, and maybe another beat took over) waits for it, like a beat
  that was never the leader; it never ticks without it;
- a beat that becomes the leader writes the schedule into redis again first: redbeat only
  writes it at start, so a redis that came back empty (no persistence, a failover) would
  have nothing due, ever, while its beats tick on.
"""

import logging
import time

from redbeat.schedulers import LUA_EXTEND_TO_SCRIPT
from redbeat.schedulers import RedBeatScheduler
from redbeat.schedulers import get_redis
from redis.exceptions import LockError
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

RETRY_S = 1.0  # after a redis error; a takeover is bounded by the lock's timeout anyway


class LeaderScheduler(RedBeatScheduler):
    """redbeat's scheduler that waits out redis instead of ending the beat."""

    _unavailable = False  # a redis error was logged and has not been followed by a tick
    _schedule_written = False  # since this beat holds the lock

    def setup_schedule(self):
        while True:
            try:
                return super().setup_schedule()
            except RedisError as exc:
                self._redis_failed("load the schedule", exc)
                time.sleep(RETRY_S)

    def tick(self, *args, **kwargs):
        try:
            if self.lock_key and self.lock is None:
                self._wait_for_the_lock()
            if not self._schedule_written:
                super().setup_schedule()
                self._schedule_written = True
            interval = super().tick(*args, **kwargs)
        except LockError as exc:  # not ours any more: another beat may be leading
            log.warning("beat: lost the leader lock (%s); waiting for it again", exc)
            self.lock = None
            self._schedule_written = False
            return RETRY_S
        except RedisError as exc:
            self._redis_failed("tick", exc)
            return RETRY_S
        if self._unavailable:
            log.info("beat: redis answers again; ticking")
            self._unavailable = False
        return interval

    def close(self):
        try:
            super().close()
        except RedisError as exc:  # it expires by itself within the lock's timeout
            log.warning("beat: could not release the leader lock: %s", exc)
            self.lock = None

    def _wait_for_the_lock(self) -> None:
        """redbeat's own acquisition (its beat_init hook), blocking until it is ours."""
        client = get_redis(self.app)
        lock = client.lock(self.lock_key, timeout=self.lock_timeout, sleep=self.max_interval)
        lock.lua_extend = client.register_script(LUA_EXTEND_TO_SCRIPT)
        log.info(
            "beat: taking the leader lock %s, or waiting here while another beat holds it",
            self.lock_key,
        )
        lock.acquire()
        log.info("beat: Acquired lock")
        self.lock = lock

    def _redis_failed(self, what: str, exc: Exception) -> None:
        if not self._unavailable:
            log.warning(
                "beat: redis is unavailable, could not %s (%s); trying again every %g s",
                what,
                exc,
                RETRY_S,
            )
        self._unavailable = True
