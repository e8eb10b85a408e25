"""Beat without a single point of failure, against real beats, a real worker and real redis:
two `celery beat` processes on celery-redbeat's redis lock run a 1 s task about once a
second (not twice); the leader SIGKILLed, the other takes over within the lock's timeout;
a beat that stops warm hands over at once; a beat rides through its redis being down at
start and restarted under it."""

import signal
import sys
import time
from pathlib import Path

import pytest

from spillway.celery_app import BEAT_LOCK_TIMEOUT_S
from spillway.clients import redis_store
from tests.integration.guards.apps import BEAT_RUNS_KEY
from tests.integration.guards.processes import app_env
from tests.servers import Server
from tests.servers import WorkerProcess
from tests.servers import start_redis
from tests.waiting import wait_until

ACQUIRED = "beat: Acquired lock"
WINDOW_S = 6.0


class Beat(Server):
    """One `celery beat` process, as supervisord's beat line runs it."""

    def __init__(self, env: dict, log_path: Path):
        super().__init__(
            log_path.stem,
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "spillway.celery_entry",
                "beat",
                "--loglevel",
                "INFO",
                "--scheduler",
                "spillway.guards.beat_leader:LeaderScheduler",
                "--pidfile=",
            ],
            0,
            log_path.parent,
            env=env,
            cwd="/",
        )
        self.start()

    def leads(self) -> bool:
        return ACQUIRED in self.log()


@pytest.fixture
def beat_env(service_env):
    return app_env(service_env, "create_beat_app", SPILLWAY_LOG_LEVEL="INFO")


@pytest.fixture
def worker(app, beat_env, tmp_path):
    """The beat app's worker (no embedded beat)."""
    process = WorkerProcess(beat_env, tmp_path / "worker.log", beat=False).start()
    yield process
    process.stop()


@pytest.fixture
def beats(app, beat_env, tmp_path, worker):
    """Start beats on demand; all of them stopped at the end."""
    started = []

    def start(name: str) -> Beat:
        beat = Beat(beat_env, tmp_path / f"beat-{name}.log")
        started.append(beat)
        return beat

    yield start
    for beat in started:
        beat.stop()


def runs_since(at: float) -> list[float]:
    return [float(run) for run in redis_store.lrange(BEAT_RUNS_KEY, 0, -1) if float(run) > at]


def runs_in_a_window() -> int:
    """The task's runs over the next WINDOW_S seconds."""
    start = time.time()
    time.sleep(WINDOW_S)
    return len([run for run in runs_since(start) if run <= start + WINDOW_S])


def the_leader(*candidates: Beat) -> Beat:
    leader = wait_until(lambda: [beat for beat in candidates if beat.leads()], timeout=60)
    assert len(leader) == 1, "two beats hold the lock"
    return leader[0]


def test_two_beats_run_each_period_once_and_the_second_takes_over(beats, record):
    """Both beats running: about one run a second (one beat ticks, the other waits on the
    lock). The leader SIGKILLed (it releases nothing): the other acquires the lock once it
    expires, and the task goes on at one run a second."""
    first, second = beats("a"), beats("b")
    leader = the_leader(first, second)
    follower = second if leader is first else first
    wait_until(lambda: runs_since(0), timeout=60)
    both = runs_in_a_window()
    assert WINDOW_S / 2 <= both <= WINDOW_S + 2, both  # about 6: not 12
    assert not follower.leads()
    assert "or waiting here while another beat holds it" in follower.log()

    killed_at = time.time()
    leader.kill(signal.SIGKILL)
    wait_until(follower.leads, timeout=BEAT_LOCK_TIMEOUT_S + 30)
    first_run = wait_until(lambda: runs_since(killed_at), timeout=30)[0]
    takeover_s = first_run - killed_at
    record("beat takeover after SIGKILL of the leader, s", round(takeover_s, 2))
    assert takeover_s < BEAT_LOCK_TIMEOUT_S + 10, takeover_s
    alone = runs_in_a_window()
    assert WINDOW_S / 2 <= alone <= WINDOW_S + 2, alone


def test_a_beat_stopped_warm_hands_over_at_once(beats, record):
    """A leader stopped by SIGTERM (supervisorctl stop, a deploy) releases its lock: the
    waiting beat takes over well inside the lock's timeout, and a restarted beat waits."""
    first = beats("a")
    the_leader(first)
    wait_until(lambda: runs_since(0), timeout=60)
    second = beats("b")
    time.sleep(2)  # second is waiting on the lock
    assert not second.leads()
    stopped_at = time.time()
    first.kill(signal.SIGTERM)
    wait_until(second.leads, timeout=30)
    first_run = wait_until(lambda: runs_since(stopped_at), timeout=30)[0]
    record("beat takeover after SIGTERM of the leader, s", round(first_run - stopped_at, 2))
    third = beats("c")
    both = runs_in_a_window()
    assert WINDOW_S / 2 <= both <= WINDOW_S + 2, both
    assert not third.leads()


def test_a_beat_rides_through_a_redis_outage(app, beat_env, tmp_path):
    """The beat's redis (its broker and lock) down when it starts: it waits, and ticks once
    redis answers; redis SIGKILLed and started empty under it (the lock and the schedule
    gone): the same beat process takes the lock again, writes the schedule again and the
    task runs on. Without the guard the beat ended at once."""
    broker = start_redis(tmp_path)
    env = {**beat_env, "SPILLWAY_BROKER_URL": f"redis://127.0.0.1:{broker.port}/1"}
    broker.stop()
    worker = WorkerProcess(env, tmp_path / "worker.log", beat=False).start()
    beat = Beat(env, tmp_path / "beat.log")
    try:
        time.sleep(3)
        assert beat.process.poll() is None, beat.log()
        assert "beat: redis is unavailable, could not load the schedule" in beat.log()
        broker.start()
        started_at = time.time()
        wait_until(lambda: runs_since(started_at), timeout=60)
        broker.kill(signal.SIGKILL)
        time.sleep(2)
        broker.start()
        restarted_at = time.time()
        wait_until(lambda: runs_since(restarted_at), timeout=60)
        assert beat.process.poll() is None, beat.log()
        assert (
            "beat: lost the leader lock" in beat.log()
            or "beat: redis is unavailable, could not tick" in beat.log()
        ), beat.log()
    finally:
        beat.stop()
        worker.kill()
        broker.stop()
