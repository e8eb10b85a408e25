"""Worker liveness against real Celery workers on real redis: each worker pings itself
through the broker (round trip in redis, /metrics and /readyz's broker check); a worker
whose connections are cut consumes again; one that stops consuming its queue exits and
supervisord starts a fresh one."""

import os
import signal
import subprocess
import sys
import time

import pytest

from spillway.clients import redis_store
from spillway.guards.worker_liveness import workers
from tests.factories import admin_headers
from tests.servers import WorkerProcess
from tests.waiting import wait_until

PING_S = "0.5"
STALL_S = 3.0


@pytest.fixture
def worker_env(service_env):
    """A worker's environment: pings every 0.5 s, stalled after 3 s."""
    return {
        **os.environ,
        **service_env,
        "SPILLWAY_ENV": "test",
        "SPILLWAY_LOG_LEVEL": "INFO",
        "SPILLWAY_WORKER_PING_S": PING_S,
        "SPILLWAY_WORKER_STALL_S": str(STALL_S),
    }


@pytest.fixture
def worker(app, worker_env, tmp_path):
    """One real worker, its liveness record awaited."""
    process = WorkerProcess(worker_env, tmp_path / "worker.log", beat=False).start()
    hostname = process.process.args[process.process.args.index("--hostname") + 1]
    wait_until(lambda: hostname in workers(redis_store.client), timeout=60)
    yield hostname, process
    process.stop()


def last_ping(hostname: str) -> dict:
    return workers(redis_store.client).get(hostname, {})


def test_each_worker_pings_itself_and_the_metrics_show_it(app, client, worker):
    """The round trip is short, repeats every half second, and /metrics lists it."""
    hostname, _ = worker
    first = last_ping(hostname)
    assert 0 <= first["rtt_s"] < 5
    wait_until(lambda: last_ping(hostname)["ran"] > first["ran"], timeout=10)
    metrics = client.get("/metrics").get_data(as_text=True)
    assert f'spillway_celery_worker_ping_rtt_seconds{{worker="{hostname}"}}' in metrics
    assert f'spillway_celery_worker_ping_age_seconds{{worker="{hostname}"}}' in metrics


def test_readyz_says_when_no_worker_consumes(app, client, worker):
    """A worker frozen (SIGSTOP) consumes nothing: past the stall bound the broker check is
    unavailable, naming the worker to the admin; thawed, it is ok again."""
    hostname, process = worker
    app.config["WORKER_STALL_S"] = STALL_S
    assert client.get("/readyz").get_json()["checks"]["broker"] == "ok"
    os.killpg(process.process.pid, signal.SIGSTOP)
    try:
        answer = wait_until(
            lambda: (r := client.get("/readyz", headers=admin_headers())).status_code == 503 and r,
            timeout=STALL_S + 10,
        )
    finally:
        os.killpg(process.process.pid, signal.SIGCONT)
    reason = answer.get_json()["checks"]["broker"]
    assert "no worker consumed a ping in the last 3 s" in reason and hostname in reason
    assert answer.headers["Retry-After"] == "1"
    wait_until(lambda: client.get("/readyz").status_code == 200, timeout=15)


def test_a_worker_whose_connections_are_cut_consumes_again(worker, redis_server, record):
    """CLIENT KILL of every broker connection: within the stall bound the worker's pings go
    through again (Celery reconnects), with no restart."""
    hostname, process = worker
    killed_at = time.time()
    redis_store.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    redis_store.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    back = wait_until(
        lambda: last_ping(hostname).get("sent", 0) > killed_at and last_ping(hostname),
        timeout=STALL_S + 10,
    )
    record("consuming again after CLIENT KILL, s", round(back["ran"] - killed_at, 2))
    assert process.process.poll() is None  # the same process, consuming again


def test_a_worker_stopped_on_purpose_is_not_a_stalled_one(app, client, worker):
    """A warm shutdown (SIGTERM) removes the worker's record once its pool has stopped:
    a host taken away leaves /readyz's broker check ok, where a worker that went silent
    fails it."""
    hostname, process = worker
    process.kill(signal.SIGTERM)
    assert process.process.returncode == 0
    assert hostname not in workers(redis_store.client)
    assert client.get("/readyz").get_json()["checks"]["broker"] == "ok"


def test_a_worker_that_stops_consuming_is_restarted(app, worker_env, tmp_path, record):
    """Under supervisord, a worker told to stop consuming its own queue (a real remote
    control command: alive, connected, consuming nothing of its own) logs one line and
    exits within the stall bound; supervisord's autorestart starts a new pid, which
    consumes again."""
    hostname = f"liveness-{os.getpid()}@localhost"
    conf = tmp_path / "supervisord.conf"
    conf.write_text(f"""
[supervisord]
nodaemon=true
logfile={tmp_path}/supervisord.log
pidfile={tmp_path}/supervisord.pid
[unix_http_server]
file={tmp_path}/supervisor.sock
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisorctl]
serverurl=unix://{tmp_path}/supervisor.sock
[program:worker]
command={sys.executable} -m celery -A spillway.celery_entry worker --concurrency 1
    --without-mingle --without-gossip --loglevel INFO --hostname {hostname}
directory=/
autorestart=true
startsecs=1
stopasgroup=true
killasgroup=true
redirect_stderr=true
stdout_logfile={tmp_path}/worker.log
""")
    supervisord = subprocess.Popen(
        [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)],
        env=worker_env,
        start_new_session=True,
    )

    def pid() -> int:
        out = subprocess.run(
            [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(conf), "pid", "worker"],
            capture_output=True,
            text=True,
            env=worker_env,
        ).stdout.strip()
        return int(out) if out.isdigit() else 0

    try:
        wait_until(lambda: hostname in workers(redis_store.client), timeout=60)
        first = pid()
        assert first > 0
        app.extensions["celery"].control.cancel_consumer(
            f"{hostname}.dq2", destination=[hostname], reply=True
        )
        stopped_at = time.monotonic()
        second = wait_until(lambda: (now := pid()) not in (0, first) and now, timeout=60)
        restart_s = time.monotonic() - stopped_at
        log = (tmp_path / "worker.log").read_text()
        assert f"worker {hostname} consumed none of its pings for" in log, log
        assert STALL_S <= restart_s < STALL_S + 15, restart_s
        record("stalled worker detected and restarted, s", round(restart_s, 2))
        restarted_at = time.time()
        wait_until(lambda: last_ping(hostname).get("ran", 0) > restarted_at, timeout=60)
        assert pid() == second
    finally:
        os.killpg(supervisord.pid, signal.SIGTERM)
        supervisord.wait(timeout=60)
