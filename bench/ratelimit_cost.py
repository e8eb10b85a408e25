"""What the per-buyer purchase limit costs: purchase throughput with limits on vs off.

Two `spillway up` stacks side by side in one session, identical but for
SPILLWAY_RATE_LIMITS: the "on" stack counts every purchase against the per-buyer limit
(one more redis round trip on the fast path) with limits set so high that nothing is
refused, so only the counting is measured, not refusals. wrk runs alternate off, on, on,
off (the machine's drift weighs on both alike); the best run of each side is compared.

On a loaded shared machine the end-to-end figures swing by 2× from run to run, so
``--in-process`` also times the purchase fast path alone (a WSGI call, real redis and
memcached, no nginx, no wrk), alternating off / on / a separate limiter round trip, best of
each: CPU microseconds of the web process per purchase.

Run from the repository root:
``.venv/bin/python bench/ratelimit_cost.py [--seconds 5] [--in-process]``.
"""

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

from foundation import Stack
from foundation import ms
from foundation import ratio
from foundation import table
from sale import WRK_SCRIPT
from sale import api
from sale import create_sale
from sale import signup_many
from sale import wrk

from tests.servers import free_port

UNLIMITED = {"SPILLWAY_RATE_LIMITS": "on", "SPILLWAY_NGINX_RATE_PER_IP": "1000000r/s",
             "SPILLWAY_NGINX_BURST_PER_IP": "100000",
             "SPILLWAY_RATE_LIMIT_PER_IP": "1000000 per second",
             "SPILLWAY_RATE_LIMIT_PER_BUYER": "1000000 per second"}


def prepare(stack: Stack, work: Path, name: str) -> tuple[str, Path]:
    """A sale with ten million units and 2,000 buyers; the wrk script that buys from it."""
    base = f"http://127.0.0.1:{stack.port}"
    secrets = dict(line.split("=", 1) for line in
                   (stack.paths.secrets_file).read_text().split())
    call, admin = api(base, {"Authorization": f"Bearer {secrets['SPILLWAY_ADMIN_TOKEN']}"})
    sale_id = create_sale(call, admin, stock=10_000_000, per_user_limit=100)
    tokens = ",".join(f'"{t}"' for t in signup_many(call, 2000))
    script = work / f"purchase-{name}.lua"
    script.write_text(WRK_SCRIPT % {"tokens": tokens, "method": "POST",
                                    "body": "'{\"quantity\": 1}'"})
    return f"{base}/api/v1/sales/{sale_id}/orders", script


def in_process(rounds: int = 5, purchases: int = 1500) -> dict[str, float]:
    """Best µs per purchase through the app's WSGI stack, limits off and on."""
    from tests.factories import ADMIN_TOKEN
    from tests.servers import start_memcached
    from tests.servers import start_redis

    logs = Path(tempfile.mkdtemp(prefix="spillway-bench-limits-inproc-"))
    redis_server, memcached = start_redis(logs), start_memcached(logs)
    os.environ.update(UNLIMITED, SPILLWAY_LOG_LEVEL="WARNING", SPILLWAY_ADMIN_TOKEN=ADMIN_TOKEN,
                      SPILLWAY_REDIS_URL=f"redis://127.0.0.1:{redis_server.port}/0",
                      SPILLWAY_MEMCACHED_SERVERS=f"127.0.0.1:{memcached.port}")
    best = {}
    try:
        for mode in ("off", "on", "separate") * rounds:
            os.environ["SPILLWAY_RATE_LIMITS"] = "on" if mode == "on" else "off"
            os.environ["DATABASE_URL"] = f"sqlite:///{logs / (mode + str(time.monotonic()))}.db"
            micros = _time_purchases(purchases, separate_hit=mode == "separate")
            best[mode] = min(best.get(mode, micros), micros)
            print(f"in process, limits {mode}: {micros:.0f} CPU µs per purchase", flush=True)
    finally:
        memcached.stop()
        redis_server.stop()
    return best


def _time_purchases(count: int, separate_hit: bool) -> float:
    """µs per purchase; ``separate_hit``: limits off in the app, and instead the per-buyer
    limit counted by `limits`' fixed-window strategy in a round trip of its own before each
    purchase, as a limiter in front of the purchase would (the design this replaced)."""
    from flask_migrate import upgrade
    from limits import parse
    from limits.storage import storage_from_string
    from limits.strategies import FixedWindowRateLimiter

    from flashsale.app import create_app
    from tests.factories import make_sale

    app = create_app("test")
    with app.app_context():
        upgrade()
        app.extensions["redis"].flushall()  # each round starts from the same empty state
        client = app.test_client()
        sale = make_sale(client, stock=10_000_000, per_user_limit=100)
        buyers = [client.post("/api/v1/users", json={"name": f"b{n}"}).get_json()["token"]
                  for n in range(count // 50)]
    body = b'{"quantity": 1}'
    path = f"/api/v1/sales/{sale['id']}/orders"
    separate = FixedWindowRateLimiter(storage_from_string(os.environ["SPILLWAY_REDIS_URL"]))
    separate_item = parse(UNLIMITED["SPILLWAY_RATE_LIMIT_PER_BUYER"])

    def purchase(n: int) -> None:
        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": path, "CONTENT_TYPE": "application/json",
                   "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
                   "HTTP_AUTHORIZATION": f"Bearer {buyers[n % len(buyers)]}",
                   "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http", "SERVER_NAME": "bench",
                   "SERVER_PORT": "80"}
        statuses = []
        if separate_hit:
            separate.hit(separate_item, "purchase-per-buyer", str(n % len(buyers)))
        b"".join(app.wsgi_app(environ, lambda status, headers, exc=None: statuses.append(status)))
        assert statuses[0].startswith("202"), statuses

    for n in range(100):  # warm up: scripts loaded, connections open, rules cached
        purchase(n)
    # CPU time of this process, not wall time: on a shared machine the wall clock mostly
    # measures the neighbours (redis's own time is not in it; the prelude adds an INCR there).
    started = time.process_time()
    for n in range(count):
        purchase(n)
    return (time.process_time() - started) / count * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--skip-stacks", action="store_true", help="only --in-process")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--in-process", action="store_true",
                        help="also time the fast path alone, without nginx and wrk")
    args = parser.parse_args()
    if args.in_process:
        best = in_process()
        print(f"in process, best CPU µs per purchase: off {best['off']:.0f}, on (counted in the "
              f"reservation's round trip) {best['on']:.0f}, a separate round trip "
              f"{best['separate']:.0f}; on / off {best['on'] / best['off']:.2f}, separate / off "
              f"{best['separate'] / best['off']:.2f}\n", flush=True)
    if args.skip_stacks:
        return 0
    work = Path(tempfile.mkdtemp(prefix="spillway-bench-limits-"))
    work.chmod(0o755)
    stacks = {}
    try:
        for name, env in (("off", {}), ("on", UNLIMITED)):
            run_dir = work / f"run-{name}"
            run_dir.mkdir()
            run_dir.chmod(0o755)
            print(f"starting the limits-{name} stack", flush=True)
            stacks[name] = Stack(run_dir, free_port(), work / f"up-{name}.log",
                                 extra_args=("--seed-demo",), env=env).start()
        targets = {name: prepare(stack, work, name) for name, stack in stacks.items()}
        results = []
        for number, name in enumerate(("off", "on", "on", "off"), 1):
            url, script = targets[name]
            print(f"wrk -c{args.connections} -d{args.seconds}s: limits {name}", flush=True)
            results.append((name, wrk(url, args.connections, args.seconds, script,
                                      run_tag=f"r{number}")))
    finally:
        for stack in stacks.values():
            stack.stop()
    best = {name: max((r for n, r in results if n == name), key=lambda r: r.rps)
            for name in ("off", "on")}
    print(table(["limits", "run req/s", "p50", "p99", "non-2xx"],
                [[n, f"{r.rps:,.0f}", ms(r.p50_ms), ms(r.p99_ms), str(r.non_2xx)]
                 for n, r in results]))
    print(f"\nbest on / best off: {ratio(best['on'].rps, best['off'].rps)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
