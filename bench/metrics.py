"""What the Prometheus metrics cost on the purchase fast path, measured side by side.

One stack (``spillway up``, Celery stopped so that the drain does not compete), and two
extra gunicorn servers on its redis and memcached, one gevent worker each, bound to
loopback TCP and hit directly (no nginx: the app's share of the cost is not diluted):

- ``off``: SPILLWAY_METRICS=off and no PROMETHEUS_MULTIPROC_DIR: no request middleware,
  and the counters that stay (reservations, cache) are plain in-memory floats;
- ``on``: the deployed configuration: the request middleware and multiprocess mode, every
  observation written to the mmap'd files.

The same wrk Lua purchase script (the harness's: rotating buyers, a fresh Idempotency-Key
per request, no replays) alternates between them for a few short rounds, and the worker's
own CPU time per request is read from /proc (it sets req/s at saturation). On a shared
machine both swing by more than the few percent sought, so the report also times,
in-process and in multiprocess mode, exactly what the metrics add to one purchase (the
middleware with its histogram observation, and the reservation counter), and divides that
by the worker's CPU per purchase without metrics. Goal: under 5 % of purchase req/s.

Run from the repository root: ``.venv/bin/python bench/metrics.py [--seconds 5 --rounds 3]``
(``--quick``: 3 s runs, 2 rounds).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests
from harness import wrk
from harness.lab import PYTHON
from harness.lab import REPO_ROOT
from harness.lab import session
from harness.report import publish
from harness.report import table
from harness.report import when_and_where

from tests.servers import gunicorn_server

CONNECTIONS = 32
BUYERS = 1000


def side_server(lab, name: str, metrics_on: bool):
    """A one-worker gunicorn on the stack's redis, memcached and database."""
    env = {**os.environ, **lab.stack.environment()}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if metrics_on:
        shared = lab.work / f"metrics-{name}"
        shared.mkdir()
        env["PROMETHEUS_MULTIPROC_DIR"] = str(shared)
    else:
        env["SPILLWAY_METRICS"] = "off"
    return lab.start(
        gunicorn_server(
            lab.logs,
            env,
            "--config",
            "python:spillway.metrics.gunicorn_conf",
            "--worker-connections",
            "4096",
            "--backlog",
            "4096",
            workers=1,
            name=f"gunicorn-{name}",
        )
    )


def worker_pid(server) -> int:
    """The one gunicorn worker under a master."""
    pid = server.process.pid
    return int(Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0])


def marginal_cost(calls: int = 200_000) -> dict:
    """CPU µs the metrics add to one purchase (run with PROMETHEUS_MULTIPROC_DIR set)."""
    from flashsale import create_app
    from flashsale.sales import metrics as sales_metrics
    from spillway.metrics.middleware import RequestMetricsMiddleware

    def purchase_answer(environ, start_response):
        start_response("202 ACCEPTED", [("Content-Type", "application/json")])
        return [b"{}"]

    create_app("prd")  # binds the registry's metrics as a worker would
    measured = RequestMetricsMiddleware(purchase_answer)
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/api/v1/sales/1/orders"}

    def per_call(work) -> float:
        started = time.process_time()
        for _ in range(calls):
            work()
        return (time.process_time() - started) / calls * 1e6

    runs = {"bare": [], "middleware": [], "counter": []}
    for _ in range(3):
        runs["bare"].append(per_call(lambda: purchase_answer(environ, lambda *a: None)))
        runs["middleware"].append(per_call(lambda: measured(environ, lambda *a: None)))
        runs["counter"].append(per_call(lambda: sales_metrics.reservation("reserved")))
    best = {name: min(values) for name, values in runs.items()}
    return {"middleware": best["middleware"] - best["bare"], "counter": best["counter"]}


def measure_marginal(lab) -> dict:
    """``marginal_cost`` in a fresh process with the stack's environment."""
    shared = lab.work / "metrics-marginal"
    shared.mkdir()
    env = {**os.environ, **lab.stack.environment(), "PROMETHEUS_MULTIPROC_DIR": str(shared)}
    done = subprocess.run(
        [PYTHON, __file__, "--marginal"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
        cwd=REPO_ROOT,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="3 s runs, 2 rounds")
    parser.add_argument("--marginal", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds = 3, 2
    if args.marginal:
        print(json.dumps(marginal_cost()))
        return 0
    load_before = os.getloadavg()[0]
    rows = []
    with session("metrics") as lab:
        print("[1] starting the stack; Celery stopped", flush=True)
        lab.supervisorctl("stop", "celery-beat", "celery-worker")
        sale = lab.new_sale(10_000_000, 100)
        print(f"[2] signing up {BUYERS} buyers; starting the two side servers", flush=True)
        script = wrk.write_purchase_script(
            lab.work / "purchase.lua", lab.buyers(BUYERS), replay_every=0
        )
        servers = {name: side_server(lab, name, name == "on") for name in ("off", "on")}
        for round_number in range(1, args.rounds + 1):
            for name in ("off", "on") if round_number % 2 else ("on", "off"):
                print(f"[3] round {round_number}: metrics {name}", flush=True)
                run = wrk.run(
                    f"{servers[name].url}/api/v1/sales/{sale['id']}/orders",
                    CONNECTIONS,
                    args.seconds,
                    script,
                    script_args=(f"m{len(rows)}",),
                    server_pid=worker_pid(servers[name]),
                )
                rows.append((round_number, name, run))
        scraped = requests.get(f"{servers['on'].url}/metrics", timeout=30).text
        print("[4] what the metrics add to one purchase, timed in-process", flush=True)
        marginal = measure_marginal(lab)
    publish("metrics", render(rows, scraped, marginal, args.seconds, load_before))
    return 0


def render(rows, scraped: str, marginal: dict, seconds: int, load_before: float) -> str:
    median = {
        name: statistics.median(r.rps for _, n, r in rows if n == name) for name in ("off", "on")
    }
    cpu = {
        name: statistics.median(r.cpu_us_per_request for _, n, r in rows if n == name)
        for name in ("off", "on")
    }
    added = marginal["middleware"] + marginal["counter"]
    leanest = min(r.cpu_us_per_request for _, n, r in rows if n == "off")
    recorded = sum(
        float(line.rsplit(" ", 1)[1])
        for line in scraped.splitlines()
        if line.startswith("spillway_http_request_duration_seconds_count") and "orders" in line
    )
    return "\n".join(
        [
            "# Metrics overhead on the purchase fast path",
            "",
            f"- {when_and_where(load_before)}; wrk -t2 -c{CONNECTIONS} -d{seconds}s, alternating",
            "- target: POST /api/v1/sales/{id}/orders on one gunicorn gevent worker, no nginx",
            "- off: SPILLWAY_METRICS=off, no PROMETHEUS_MULTIPROC_DIR; on: as deployed",
            "",
            f"**What the metrics add to one purchase: {added:.1f} µs of CPU** (in-process,"
            f" multiprocess mode, best of 3 × 200,000: middleware with its histogram"
            f" observation {marginal['middleware']:.1f} µs, reservation counter"
            f" {marginal['counter']:.1f} µs), against {leanest:,.0f} µs of worker CPU"
            f" per purchase without metrics (the least disturbed run, so the share is not"
            f" understated): **{added / leanest:.1%} of purchase req/s** at saturation"
            f" (goal < 5 %).",
            "",
            f"Side by side under wrk (noisy: the cores are shared): worker CPU per purchase,"
            f" median, off {cpu['off']:,.0f} µs, on {cpu['on']:,.0f} µs"
            f" ({1 - cpu['off'] / cpu['on']:+.1%}); req/s off {median['off']:,.0f}, on"
            f" {median['on']:,.0f} ({median['on'] / median['off'] - 1:+.1%}). The `on` server's"
            f" /metrics counted {recorded:,.0f} purchase requests.",
            "",
            table(
                [
                    "round",
                    "metrics",
                    "req/s",
                    "worker CPU µs/request",
                    "p50 ms",
                    "p99 ms",
                    "non-2xx",
                ],
                [
                    [
                        str(r),
                        n,
                        f"{w.rps:,.0f}",
                        f"{w.cpu_us_per_request:,.0f}",
                        f"{w.p50_ms:.2f}",
                        f"{w.p99_ms:.2f}",
                        str(w.non_2xx),
                    ]
                    for r, n, w in rows
                ],
            ),
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
