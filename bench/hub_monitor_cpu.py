"""CPU per request of the purchase and of the bare hello view with the blocked-hub detector
on and off (``SPILLWAY_HUB_MONITOR``), side by side, in one gunicorn gevent worker reached
directly: bench/purchase_cpu.py's method (the gunicorn tree's own CPU time per answered
request, from /proc; targets in alternating rounds, each on a fresh gunicorn, so drift on
a shared machine weighs on all alike; every purchase a real 202 reservation).

The detector costs gevent's trace function on every greenlet switch, a native thread that
wakes every SPILLWAY_MAX_BLOCKING_MS, and a ticker greenlet that wakes every 50 ms
(docs/guards.md). The fixed part, per second whatever the load, is what ``--idle``
measures on an idle worker (far steadier than a difference of two loaded runs on a shared
machine).

Run from the repository root: ``.venv/bin/python bench/hub_monitor_cpu.py [--rounds 3]
[--seconds 6] [--connections 64] [--idle 20]``.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "bench")]

from foundation import table  # noqa: E402
from harness.cpu import Meter  # noqa: E402
from purchase_cpu import PER_USER_LIMIT  # noqa: E402
from purchase_cpu import TOP_RATE  # noqa: E402
from purchase_cpu import answers  # noqa: E402
from purchase_cpu import prepare  # noqa: E402
from purchase_cpu import run_target  # noqa: E402
from sale import WRK_SCRIPT  # noqa: E402

from tests.factories import ADMIN_TOKEN  # noqa: E402
from tests.factories import eventually  # noqa: E402
from tests.servers import Server  # noqa: E402
from tests.servers import free_port  # noqa: E402
from tests.servers import start_memcached  # noqa: E402
from tests.servers import start_redis  # noqa: E402


def idle_cpu_ms_per_s(env: dict, work: Path, seconds: float) -> float:
    """CPU milliseconds per second of one idle gunicorn gevent worker's tree."""
    port = free_port()
    server = Server("gunicorn", [sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", "1",
                                 "-b", f"127.0.0.1:{port}", "--no-control-socket",
                                 "spillway.wsgi:app"], port, work,
                    env={**os.environ, **env}).start(timeout=20)
    try:
        eventually(lambda: answers(f"http://127.0.0.1:{port}/healthz"), timeout=20)
        time.sleep(2)  # start-up done
        meter = Meter(server.process.pid).start()
        time.sleep(seconds)
        return meter.stop() * 1000 / seconds
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--idle", type=float, default=0,
                        help="then this many seconds of an idle worker, detector on and off")
    args = parser.parse_args()
    args.profile = False  # what run_target reads
    work = Path(tempfile.mkdtemp(prefix="spillway-bench-hub-monitor-"))
    redis_server, memcached = start_redis(work), start_memcached(work)
    env = {"SPILLWAY_RATE_LIMITS": "off", "SPILLWAY_LOG_LEVEL": "WARNING",
           "SPILLWAY_ADMIN_TOKEN": ADMIN_TOKEN, "SPILLWAY_ENV": "prd",
           "SPILLWAY_SECRET_KEY": "bench-" + "k" * 40, "SPILLWAY_PROXY_HOPS": "0",
           "SPILLWAY_REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/0",
           "SPILLWAY_MEMCACHED_SERVERS": f"127.0.0.1:{memcached.port}",
           "DATABASE_URL": f"sqlite:///{work / 'bench.db'}"}
    results = []
    try:
        purchases = args.rounds * (args.seconds + 2) * TOP_RATE
        sale_id, tokens = prepare(work, env, max(1000, purchases // PER_USER_LIMIT))
        quoted = ",".join(f'"{token}"' for token in tokens)
        scripts = {}
        for method, body in (("POST", "'{\"quantity\": 1}'"), ("GET", "nil")):
            scripts[method] = work / f"{method}.lua"
            scripts[method].write_text(WRK_SCRIPT % {"tokens": quoted, "method": method,
                                                     "body": body})
        purchase = f"http://127.0.0.1:PORT/api/v1/sales/{sale_id}/orders"
        hello = "http://127.0.0.1:PORT/demo/index"
        # prd refuses an admin token under 32 characters; the runs need none of its views.
        served = {"SPILLWAY_ADMIN_TOKEN": "bench-" + "a" * 40}
        targets = [(f"{what}, detector {state}", url, scripts[method],
                    {**served, "SPILLWAY_HUB_MONITOR": state})
                   for what, url, method in (("purchase", purchase, "POST"),
                                             ("bare hello", hello, "GET"))
                   for state in ("on", "off")]
        for round_ in range(1, args.rounds + 1):
            for name, url, script, own_env in targets:
                result = run_target(name, url, script, {**env, **own_env}, work, args)
                results.append(result)
                print(f"round {round_}: {name}: {result['rps']:,.0f} req/s, "
                      f"{result['cpu_us']:.0f} CPU µs/req, non-2xx {result['non_2xx']}",
                      flush=True)
        idle = {state: [] for state in ("on", "off")}
        for _ in range(2 if args.idle else 0):
            for state in idle:
                used = idle_cpu_ms_per_s({**env, **served, "SPILLWAY_HUB_MONITOR": state},
                                         work, args.idle)
                idle[state].append(used)
                print(f"idle worker, detector {state}: {used:.2f} CPU ms/s", flush=True)
    finally:
        memcached.stop()
        redis_server.stop()
    rows = []
    for name, *_ in targets if results else ():
        runs = [r for r in results if r["name"] == name]
        cpu = sorted(r["cpu_us"] for r in runs)
        rows.append([name, f"{max(r['rps'] for r in runs):,.0f}", f"{cpu[0]:.0f}",
                     f"{cpu[len(cpu) // 2]:.0f}"])
    print("\neach target over its rounds:")
    print(table(["target", "best req/s", "CPU µs/req, best", "CPU µs/req, median"], rows))
    for state, runs in idle.items() if args.idle else ():
        print(f"idle worker, detector {state}: {min(runs):.2f} CPU ms per second (best of 2)")
    if any(r["non_2xx"] for r in results):
        print("\nsome answers were not 2xx: the figures are not of real reservations")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
