"""Several-hosts benchmark: purchases through nginx balancing two app hosts, then one.

The deployment is tests/several_hosts.py's: five network namespaces on one machine (a
data host with redis, memcached and PostgreSQL; two app hosts with one gevent worker
each; two Celery worker hosts) and nginx on 127.0.0.1 balancing the app hosts. wrk runs
the harness's purchase script (rotating buyers, a fresh Idempotency-Key each, no replays):

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
import json
import os
import threading
from pathlib import Path

from harness import wrk
from harness.report import ms
from harness.report import publish
from harness.report import table
from harness.report import when_and_where
from harness.shop import Shop

from tests.several_hosts import ADMIN
from tests.several_hosts import several_hosts

BUYERS = 1000
SCENARIOS = ("two app hosts", "app host 2 dies after 1 s", "one app host")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    options = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/multihost.py needs root (network namespaces)")
    load_before = os.getloadavg()[0]
    results = []
    with several_hosts(shards=1) as deployment:
        shop = Shop(deployment.url, {"Authorization": f"Bearer {ADMIN}"})
        url = f"{deployment.url}/api/v1/sales/{shop.new_sale(10_000_000, 100)['id']}/orders"
        script = wrk.write_purchase_script(
            deployment.work / "purchase.lua", shop.signup(BUYERS, "mb"), replay_every=0
        )
        for name in SCENARIOS:
            killer = threading.Timer(1.0, deployment.hosts["app2"].kill)
            if "dies" in name:
                killer.start()
            print(f"[bench] {name}: wrk -c{options.connections} -d{options.seconds}s", flush=True)
            run = wrk.run(
                url, options.connections, options.seconds, script, script_args=(name[:3],)
            )
            if killer.is_alive():
                killer.join()
            results.append(
                {
                    "scenario": name,
                    "rps": run.rps,
                    "p50_ms": run.p50_ms,
                    "p99_ms": run.p99_ms,
                    "requests": run.requests,
                    "non_2xx": run.non_2xx,
                    "timeouts": run.timeouts,
                    "socket_errors": run.socket_errors,
                }
            )
    publish(
        "multihost",
        "\n".join(
            [
                "# Several-hosts benchmark",
                "",
                f"- {when_and_where(load_before)}",
                "- five network namespaces on this machine (tests/several_hosts.py); nginx on "
                "127.0.0.1 balancing two app hosts (gunicorn, 1 gevent worker each) over TCP; "
                f"wrk -t2 -c{options.connections} -d{options.seconds}s --latency, "
                f"{BUYERS:,} rotating buyers, a fresh Idempotency-Key each",
                "",
                table(
                    [
                        "scenario",
                        "req/s",
                        "p50 ms",
                        "p99 ms",
                        "non-2xx",
                        "timeouts",
                        "socket errors",
                    ],
                    [
                        [
                            r["scenario"],
                            f"{r['rps']:,.0f}",
                            ms(r["p50_ms"]),
                            ms(r["p99_ms"]),
                            f"{r['non_2xx']:,}",
                            str(r["timeouts"]),
                            str(r["socket_errors"]),
                        ]
                        for r in results
                    ],
                ),
                "",
            ]
        ),
    )
    if options.json:
        options.json.write_text(
            json.dumps(
                {
                    "bench": "multihost",
                    "seconds": options.seconds,
                    "connections": options.connections,
                    "results": results,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
