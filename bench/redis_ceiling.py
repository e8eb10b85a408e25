"""How many purchases one redis core admits with no Python in front: reserve.lua driven
by redis-benchmark, beside a plain SET and INCR on the same server, in one run.

Why this bench: a purchase is one EVALSHA of reserve.lua, so redis's own ceiling is the
stack's ceiling however many web workers stand in front of it. redis-benchmark speaks
RESP from C, pipelines (``-P``) as the auto-pipelining web workers do, and substitutes a
fresh random number for every ``__rand_int__``: each call is a new buyer, Idempotency-Key
and order id, so every admission is a real reservation (an order hash, an outbox entry, a
payment deadline, a buyer's set), never the duplicate path. The sale has ten million units
and the random space is 10^9, so stock and the per-buyer limit never refuse.

It also reports redis's own microseconds inside each command (INFO commandstats), which a
busy machine moves less than the rates: 10^6 ÷ that is one core's ceiling for the script.

Run from the repository root: ``.venv/bin/python bench/redis_ceiling.py [--requests 200000]
[--rounds 3] [--clients 50]``.
"""

import argparse
import os
import re
import subprocess
import time

import redis
from harness.lab import session
from harness.report import table

from tests.environment import service_environment
from tests.servers import binary
from tests.servers import start_memcached
from tests.servers import start_redis

RANDOM = "__rand_int__"  # redis-benchmark's placeholder: a new random number each time
PIPELINES = (1, 16)


def prepare(env: dict) -> tuple[str, list[str]]:
    """A sale of ten million units, live in redis; the EVALSHA arguments of one purchase
    with the buyer, key and order id left to redis-benchmark."""
    os.environ.update(env)
    from flask_migrate import upgrade

    from flashsale.app import create_app
    from flashsale.sales import stock
    from spillway import redis_scripts
    from tests.factories import make_sale

    app = create_app("test")
    with app.app_context():
        upgrade()
        sale = make_sale(app.test_client(), stock=10_000_000, per_user_limit=10)
        script = redis_scripts.script(stock.LUA_DIR / "reserve.lua")
        script.sha = app.extensions["redis"].script_load(script.script)
        keys, args = stock.reserve_call(
            int(sale["id"]), RANDOM, 1, RANDOM, int(time.time() * 1000), RANDOM
        )
    return script.sha, [str(len(keys)), *map(str, keys), *map(str, args)]


def benchmark(port: int, clients: int, requests: int, pipeline: int, command: list[str]) -> float:
    """Requests per second redis-benchmark reports for ``command``."""
    done = subprocess.run(
        [
            binary("redis-benchmark"),
            *("-p", str(port), "-c", str(clients), "-n", str(requests), "-P", str(pipeline)),
            *("-r", "1000000000", "-q", "--csv"),
            *command,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return float(re.findall(r'"([\d.]+)"', done.stdout.strip().splitlines()[-1])[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args()
    with session("redis-ceiling") as lab:
        server = lab.start(start_redis(lab.logs))
        memcached = lab.start(start_memcached(lab.logs))
        env = service_environment(
            f"127.0.0.1:{server.port}",
            f"127.0.0.1:{memcached.port}",
            f"sqlite:///{lab.work / 'bench.db'}",
            lab.work,
        )
        sha, reserve_args = prepare(env)
        client = redis.Redis(port=server.port)
        sample = [arg.replace(RANDOM, "424242") for arg in reserve_args]
        outcome = client.evalsha(sha, *sample)[0]
        assert outcome == b"reserved", f"a sample purchase was {outcome!r}, not a reservation"
        targets = {
            "SET": ["SET", f"k:{RANDOM}", "v"],
            "INCR": ["INCR", f"n:{RANDOM}"],
            "reserve.lua": ["EVALSHA", sha, *reserve_args],
        }
        best: dict[tuple[str, int], float] = {}
        for round_ in range(1, args.rounds + 1):
            for pipeline in PIPELINES:
                for name, command in targets.items():
                    # redis-benchmark draws the same random numbers every run: a prefix of
                    # its own keeps each run's buyers, keys and orders new.
                    fresh = [
                        arg.replace(RANDOM, f"{round_}-{pipeline}-{RANDOM}") for arg in command
                    ]
                    rps = benchmark(server.port, args.clients, args.requests, pipeline, fresh)
                    best[name, pipeline] = max(best.get((name, pipeline), 0.0), rps)
                    print(f"round {round_}: {name} -P {pipeline}: {rps:,.0f}/s", flush=True)
        # redis's own time inside each command: steadier than req/s on a shared machine,
        # and 10^6 ÷ it is the ceiling of one core with no network or parsing around it.
        stats = client.info("commandstats")
        inside = {
            name: stats[f"cmdstat_{name.lower()}"]["usec_per_call"]
            for name in ("SET", "INCR", "EVALSHA")
        }
        print(
            "\nµs inside redis per call: "
            + ", ".join(f"{name} {usec:.2f}" for name, usec in inside.items())
            + f"; one core's ceiling for reserve.lua alone: {1e6 / inside['EVALSHA']:,.0f}/s"
        )
        orders = len(client.keys("spillway:order:*")) - 1  # the sample's too
        runs = args.rounds * len(PIPELINES)
        print(f"\norders in redis: {orders:,} of {runs * args.requests:,} reserve.lua calls")
        print(f"best of {args.rounds} rounds, {args.clients} clients, one redis-server:")
        rows = [
            [
                name,
                *(f"{best[name, p]:,.0f}" for p in PIPELINES),
                *(f"{best[name, p] / best['SET', p]:.2f}" for p in PIPELINES),
            ]
            for name in targets
        ]
        print(
            table(
                ["command", *(f"-P {p} /s" for p in PIPELINES)]
                + [f"÷ SET at -P {p}" for p in PIPELINES],
                rows,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
