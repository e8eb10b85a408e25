"""Worker liveness: proof that each Celery worker consumes, and a restart when it stops.

A worker can stay alive yet stop consuming after a redis reconnect (celery #8030, #8082,
#10205, #10302), and Celery has no cheap liveness probe (celery #4079). Here each worker
proves it the only way that counts, through the broker:

- every ``SPILLWAY_WORKER_PING_S`` its main process publishes a ping task to the worker's
  own queue (Celery's ``worker_direct``: ``<hostname>.dq2``), on a connection of its own;
- the worker's consumer receiving it is the proof (``task_received``, in the main
  process); a pool process running it records the round trip in redis
  (:data:`LIVENESS_KEY`), where ``/readyz``'s broker check and ``/metrics`` read it;
- when no ping has been received for ``SPILLWAY_WORKER_STALL_S`` while the worker had a
  free slot (a pool process not running a task: a worker whose processes are all busy
  does not fetch, by design), it logs one line and shuts down warm (SIGTERM), then hard
  after :data:`EXIT_GRACE_S`; supervisord's autorestart starts a fresh one. The watchdog
  is a thread, not the worker's timer: a main loop stuck reconnecting runs no timers. A
  process that was stopped as a whole (SIGSTOP, a paused VM) is given the bound afresh
  when it runs again;
- a worker that stops (a warm shutdown, its own or the operator's) removes its record, so
  that a host taken away on purpose is not a stalled worker; one that dies keeps it (and
  ``/readyz`` says so) until a new one under the same hostname pings, or for
  :data:`FORGET_AFTER_S`.
"""

import json
import logging
import os
import signal
import threading
import time

from celery import bootsteps
from celery.signals import task_received
from celery.signals import worker_shutdown
from celery.utils.nodenames import worker_direct
from prometheus_client.core import GaugeMetricFamily
from redis.exceptions import RedisError

from spillway.clients import redis_store

log = logging.getLogger(__name__)

PING_TASK = "spillway.guards.ping"
LIVENESS_KEY = "spillway:workers:liveness"  # hash: hostname → its last ping, as JSON
# Workers not heard of for this long are forgotten (a host taken away).
FORGET_AFTER_S = 600
EXIT_GRACE_S = 15.0


def install(celery_app, flask_app) -> None:
    """The ping task and the watchdog, on the app's Celery app (its worker entry point)."""
    config = flask_app.config

    @celery_app.task(name=PING_TASK, ignore_result=True, acks_late=False)
    def ping(hostname: str, sent: float) -> None:
        """Record that this worker's ping went through the broker and ran."""
        record(redis_store.client, hostname, sent, time.time())

    Watchdog.ping_s = config["WORKER_PING_S"]
    Watchdog.stall_s = config["WORKER_STALL_S"]
    Watchdog.redis = flask_app.extensions["redis"]
    celery_app.steps["worker"].add(Watchdog)


def record(client, hostname: str, sent: float, ran: float) -> None:
    client.hset(
        LIVENESS_KEY,
        hostname,
        json.dumps({"sent": sent, "ran": ran, "rtt_s": round(ran - sent, 6), "pid": os.getppid()}),
    )


def workers(client, now: float | None = None) -> dict[str, dict]:
    """Each worker heard of lately: hostname → its last ping (``age_s``: since it ran)."""
    now = time.time() if now is None else now
    known, gone = {}, []
    for hostname, raw in client.hgetall(LIVENESS_KEY).items():
        entry = json.loads(raw)
        entry["age_s"] = max(now - entry["ran"], 0.0)
        name = hostname.decode() if isinstance(hostname, bytes) else hostname
        (gone.append(name) if entry["age_s"] > FORGET_AFTER_S else known.update({name: entry}))
    if gone:
        client.hdel(LIVENESS_KEY, *gone)
    return known


def check_consumers(client, stall_s: float) -> None:
    """Part of the broker's readiness: some worker consumed a ping lately, or none is known.

    :raise RuntimeError: every known worker's last ping is older than ``stall_s``.
    """
    try:
        known = workers(client)
    except RedisError:  # the runtime's redis check reports that one
        return
    if known and all(entry["age_s"] > stall_s for entry in known.values()):
        ages = ", ".join(f"{name} {entry['age_s']:.0f} s ago" for name, entry in known.items())
        raise RuntimeError(f"no worker consumed a ping in the last {stall_s:g} s ({ages})")


class LivenessCollector:
    """Each worker's last ping, read from redis at each scrape of ``/metrics``."""

    def __init__(self, client):
        self.client = client

    def collect(self):
        rtt = GaugeMetricFamily(
            "spillway_celery_worker_ping_rtt_seconds",
            "A worker's last ping: published to its own queue → run.",
            labels=["worker"],
        )
        age = GaugeMetricFamily(
            "spillway_celery_worker_ping_age_seconds",
            "Seconds since a worker's last ping ran (it consumes while "
            "this stays under SPILLWAY_WORKER_PING_S or so).",
            labels=["worker"],
        )
        for name, entry in sorted(workers(self.client).items()):
            rtt.add_metric([name], entry["rtt_s"])
            age.add_metric([name], entry["age_s"])
        yield rtt
        yield age


class Watchdog(bootsteps.StartStopStep):
    """The worker's main process: send pings, notice their arrival, exit when they stop."""

    label = "spillway liveness"
    ping_s = 5.0
    stall_s = 30.0
    redis = None  # the app's redis client, where the records are

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.received_at = time.monotonic()
        self.stopping = threading.Event()
        self.thread = None

    def start(self, worker):
        self.received_at = time.monotonic()  # the consumer gets the stall bound to start
        task_received.connect(self.on_received, weak=False)
        worker_shutdown.connect(self.on_shutdown, weak=False)
        self.thread = threading.Thread(
            target=self.watch, args=(worker,), daemon=True, name="spillway-liveness"
        )
        self.thread.start()

    def stop(self, worker):
        self.stopping.set()
        task_received.disconnect(self.on_received)

    def on_shutdown(self, sender=None, **_):
        # Sent once the pool has stopped: no ping of this worker runs after it.
        try:
            self.redis.hdel(LIVENESS_KEY, sender.hostname)
        except RedisError as exc:  # forgotten after FORGET_AFTER_S instead
            log.warning("liveness: could not remove this worker's record: %s", exc)

    def on_received(self, sender=None, request=None, **_):
        if request is not None and request.name == PING_TASK:
            self.received_at = time.monotonic()

    def watch(self, worker) -> None:
        app = worker.app
        queue = worker_direct(worker.hostname)
        connection = app.connection_for_write()
        failed = False
        try:
            woke = time.monotonic()
            while not self.stopping.wait(self.ping_s):
                slept, woke = time.monotonic() - woke, time.monotonic()
                if slept > 2 * self.ping_s + 1:
                    # The whole process was stopped (SIGSTOP, a paused VM) or starved: its
                    # consumer was as silent as this thread, through no fault of its own.
                    log.warning(
                        "liveness: this process ran nothing for %.0f s; its consumer "
                        "gets %g s again",
                        slept,
                        self.stall_s,
                    )
                    self.received_at = woke
                try:
                    app.send_task(
                        PING_TASK,
                        args=[worker.hostname, time.time()],
                        queue=queue,
                        expires=self.stall_s,
                        connection=connection,
                    )
                    failed = False
                except Exception as exc:  # the broker is down: the stall bound decides
                    if not failed:
                        log.warning("liveness: could not send a ping: %s", exc)
                    failed = True
                silent = time.monotonic() - self.received_at
                if silent > self.stall_s and self._has_free_slot(worker):
                    self._exit(worker, silent)
                    return
        finally:
            connection.release()

    @staticmethod
    def _has_free_slot(worker) -> bool:
        # Tasks a pool process runs, not those merely received: a task received and never
        # run (held for its ETA, or stuck after a reconnect) leaves its slot free.
        from celery.worker import state

        return len(state.active_requests) < (worker.concurrency or 1)

    @staticmethod
    def _exit(worker, silent: float) -> None:
        log.error(
            "worker %s consumed none of its pings for %.0f s with a free slot: exiting "
            "so that a fresh one is started",
            worker.hostname,
            silent,
        )
        os.kill(os.getpid(), signal.SIGTERM)  # warm: running tasks finish
        time.sleep(EXIT_GRACE_S)  # a warm shutdown ends the process, this thread with it
        log.error("worker %s did not stop in %.0f s: killing it", worker.hostname, EXIT_GRACE_S)
        if os.getpgrp() == os.getpid():  # its own process group: the pool goes too
            os.killpg(os.getpid(), signal.SIGKILL)
        os._exit(1)
