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
import time
from contextlib import ExitStack

from harness import wrk
from harness.lab import session
from harness.report import ms
from harness.report import table

from tests.environment import service_environment
from tests.servers import start_memcached
from tests.servers import start_redis

UNLIMITED = {
    "SPILLWAY_RATE_LIMITS": "on",
    "SPILLWAY_NGINX_RATE_PER_IP": "1000000r/s",
    "SPILLWAY_NGINX_BURST_PER_IP": "100000",
    "SPILLWAY_RATE_LIMIT_PER_IP": "1000000 per second",
    "SPILLWAY_RATE_LIMIT_PER_BUYER": "1000000 per second",
    # The set-up signs up its buyers from one address.
    "SPILLWAY_SIGNUP_LIMIT_PER_IP": "1000000 per second",
}


def in_process(rounds: int = 5, purchases: int = 1500) -> dict[str, float]:
    """Best µs per purchase through the app's WSGI stack, limits off and on."""
    best = {}
    with session("limits-inproc") as lab:
        redis_server, memcached = start_redis(lab.logs), start_memcached(lab.logs)
        try:
            os.environ.update(
                service_environment(
                    f"127.0.0.1:{redis_server.port}", f"127.0.0.1:{memcached.port}", "", lab.work
                ),
                **UNLIMITED,
                SPILLWAY_LOG_LEVEL="WARNING",
            )
            for mode in ("off", "on", "separate") * rounds:
                os.environ["SPILLWAY_RATE_LIMITS"] = "on" if mode == "on" else "off"
                os.environ["DATABASE_URL"] = f"sqlite:///{lab.work / mode}{time.monotonic()}.db"
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
        buyers = [
            client.post("/api/v1/users", json={"name": f"b{n}"}).get_json()["token"]
            for n in range(count // 50)
        ]
    body = b'{"quantity": 1}'
    path = f"/api/v1/sales/{sale['id']}/orders"
    separate = FixedWindowRateLimiter(storage_from_string(os.environ["SPILLWAY_REDIS_URL"]))
    separate_item = parse(UNLIMITED["SPILLWAY_RATE_LIMIT_PER_BUYER"])

    def purchase(n: int) -> None:
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": path,
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
            "HTTP_AUTHORIZATION": f"Bearer {buyers[n % len(buyers)]}",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.url_scheme": "http",
            "SERVER_NAME": "bench",
            "SERVER_PORT": "80",
        }
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


def end_to_end(seconds: int, connections: int) -> list[tuple]:
    """The two stacks, wrk alternating off, on, on, off: (side, run) each."""
    with ExitStack() as stacks:
        labs = {
            name: stacks.enter_context(session(f"limits-{name}", stack_env=env))
            for name, env in (("off", {}), ("on", UNLIMITED))
        }
        targets = {}
        for name, lab in labs.items():
            print(f"starting the limits-{name} stack; 2,000 buyers", flush=True)
            sale = lab.new_sale(10_000_000, 100)
            targets[name] = (
                f"{lab.url}/api/v1/sales/{sale['id']}/orders",
                wrk.write_purchase_script(
                    lab.work / "purchase.lua", lab.buyers(2000), replay_every=0
                ),
            )
        results = []
        for number, name in enumerate(("off", "on", "on", "off"), 1):
            print(f"wrk -c{connections} -d{seconds}s: limits {name}", flush=True)
            url, script = targets[name]
            results.append(
                (name, wrk.run(url, connections, seconds, script, script_args=(f"r{number}",)))
            )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--skip-stacks", action="store_true", help="only --in-process")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="also time the fast path alone, without nginx and wrk",
    )
    args = parser.parse_args()
    if args.in_process:
        best = in_process()
        print(
            f"in process, best CPU µs per purchase: off {best['off']:.0f}, on (counted in the "
            f"reservation's round trip) {best['on']:.0f}, a separate round trip "
            f"{best['separate']:.0f}; on / off {best['on'] / best['off']:.2f}, separate / off "
            f"{best['separate'] / best['off']:.2f}\n",
            flush=True,
        )
    if args.skip_stacks:
        return 0
    results = end_to_end(args.seconds, args.connections)
    best = {
        name: max((r for n, r in results if n == name), key=lambda r: r.rps)
        for name in ("off", "on")
    }
    print(
        table(
            ["limits", "run req/s", "p50", "p99", "non-2xx"],
            [[n, f"{r.rps:,.0f}", ms(r.p50_ms), ms(r.p99_ms), str(r.non_2xx)] for n, r in results],
        )
    )
    print(f"\nbest on / best off: {best['on'].rps / best['off'].rps:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
