"""Several-hosts benchmark: purchases through nginx balancing two app hosts, then one.

The deployment is tests/several_hosts.py's: five network namespaces on one machine (a
data host with redis, memcached and PostgreSQL; two app hosts with one gevent worker
each; two Celery worker hosts) and nginx on 127.0.0.1 balancing the app hosts. wrk runs
bench/sale.py's purchase script (rotating buyers, a fresh Idempotency-Key each):

1. both app hosts in the balancer;
2. app host 2 dies one second into the run (SIGKILL of its gunicorn): the purchases it
   was serving fail with a 502 (nginx never replays a POST that reached an upstream; the
   client retries with its Idempotency-Key, which makes that safe), then nginx sends
   everything to app host 1;
3. app host 1 alone.

All hosts share this machine's 2 cores, so two app hosts cannot be twice one; the run
shows the failover and the cost of TCP between hosts against the one-machine stack's unix
sockets (compare bench/results/sale.md, measured at another time).

Needs root (network namespaces). Run from the repository root:
``.venv/bin/python bench/multihost.py [--seconds N] [--json PATH]`` (about 1 minute).
"""

import argparse
import datetime
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from foundation import REPO_ROOT  # also puts the repository on sys.path
from foundation import git_revision
from foundation import ms
from foundation import table
from sale import WRK_SCRIPT
from sale import wrk

from tests.several_hosts import ADMIN
from tests.several_hosts import several_hosts

RESULTS_FILE = REPO_ROOT / "bench" / "results" / "multihost.md"
BUYERS = 1000


def prepare(base: str, work: Path) -> tuple[str, Path]:
    """A sale with plenty of stock, signed-up buyers, and wrk's script for them."""
    session, admin = requests.Session(), {"Authorization": f"Bearer {ADMIN}"}
    product = session.post(f"{base}/api/v1/products", headers=admin, timeout=30,
                           json={"name": "Bench lamp", "price_cents": 100}).json()
    ends = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    sale = session.post(f"{base}/api/v1/sales", headers=admin, timeout=30, json={
        "product_id": product["id"], "stock": 10_000_000, "per_user_limit": 100,
        "payment_timeout_s": 86_400, "ends_at": ends.isoformat()}).json()
    with ThreadPoolExecutor(max_workers=16) as pool:
        tokens = list(pool.map(lambda n: requests.post(
            f"{base}/api/v1/users", json={"name": f"mb{n}"}, timeout=30).json()["token"],
            range(BUYERS)))
    script = work / "purchase.lua"
    script.write_text(WRK_SCRIPT % {"tokens": ",".join(f'"{t}"' for t in tokens),
                                    "method": "POST", "body": "'{\"quantity\": 1}'"})
    return f"{base}/api/v1/sales/{sale['id']}/orders", script


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    options = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/multihost.py needs root (network namespaces)")
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()[0]
    results = []
    with several_hosts(shards=1) as deployment:
        url, script = prepare(deployment.url, deployment.work)
        for name in ("two app hosts", "app host 2 dies after 1 s", "one app host"):
            killer = None
            if name.startswith("app host 2 dies"):
                killer = threading.Timer(1.0, deployment.hosts["app2"].kill)
                killer.start()
            print(f"[bench] {name}: wrk -c{options.connections} -d{options.seconds}s", flush=True)
            result = wrk(url, options.connections, options.seconds, script, run_tag=name[:3])
            if killer:
                killer.join()
            results.append({"scenario": name, "rps": result.rps, "p50_ms": result.p50_ms,
                            "p99_ms": result.p99_ms, "requests": result.requests,
                            "non_2xx": result.non_2xx, "timeouts": result.timeouts,
                            "socket_errors": result.socket_errors})
    report = "\n".join([
        "# Several-hosts benchmark",
        "",
        f"- run: {started:%Y-%m-%d %H:%M} UTC, commit {git_revision()}, {os.cpu_count()} cores "
        f"shared, load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after",
        "- five network namespaces on this machine (tests/several_hosts.py); nginx on "
        "127.0.0.1 balancing two app hosts (gunicorn, 1 gevent worker each) over TCP; "
        f"wrk -t2 -c{options.connections} -d{options.seconds}s --latency, {BUYERS:,} rotating "
        "buyers, a fresh Idempotency-Key each",
        "",
        table(["scenario", "req/s", "p50 ms", "p99 ms", "non-2xx", "timeouts",
               "socket errors c/r/w"],
              [[r["scenario"], f"{r['rps']:,.0f}", ms(r["p50_ms"]), ms(r["p99_ms"]),
                f"{r['non_2xx']:,}", str(r["timeouts"]), r["socket_errors"]] for r in results]),
        "",
    ])
    RESULTS_FILE.write_text(report)
    print(report)
    if options.json:
        options.json.write_text(json.dumps({
            "bench": "multihost", "commit": git_revision(), "started": started.isoformat(),
            "seconds": options.seconds, "connections": options.connections,
            "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
