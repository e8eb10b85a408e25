"""CPU per request of the purchase against the bare hello view, in one gunicorn gevent worker
reached directly (no nginx), with redis auto-pipelining on and off, side by side.

Why this bench: the harness's purchase ÷ bare hello ratio goes through nginx on a shared
2-core machine, where every figure moves with the neighbours. The gunicorn tree's own CPU
time per answered request (harness/cpu.py, from /proc) is steadier, and the targets run in
alternating rounds (hello, purchase with batching on, purchase with batching off), each on a
fresh gunicorn, so drift weighs on all alike. Each purchase round uses fresh Idempotency-Keys
and buyers with room under their limit, so every answer is a real 202 reservation.

``--hub-monitor`` compares the blocked-hub detector (docs/guards.md) on and off instead:
the purchase and the hello, each with ``SPILLWAY_HUB_MONITOR`` on and off, batching on.

``--durability`` compares SPILLWAY_REDIS_DURABILITY (spillway/redis_durability.py): the
purchase with ``none`` and with ``replica`` (one ``WAIT`` per batch, on a real replica on
loopback), and ``fsync`` where the redis has WAITAOF (7.2+).

``--close`` sends ``Connection: close`` (one request per connection, as nginx → gunicorn
works in the shipped stack); ``--profile`` adds cProfile's top functions per target (CPU
clock; the profiler inflates call-heavy code, so read shares, not absolute times).

Run from the repository root: ``.venv/bin/python bench/purchase_cpu.py [--rounds 3]
[--seconds 6] [--connections 64] [--hub-monitor | --durability] [--close] [--profile]``.
"""

import argparse
import io
import os
import pstats
import re
import secrets
import time
import urllib.request
from pathlib import Path

import redis
from harness import wrk
from harness.lab import session
from harness.report import table

from tests.environment import service_environment
from tests.servers import gunicorn_server
from tests.servers import start_memcached
from tests.servers import start_redis
from tests.servers import start_replica

# Loaded by gunicorn with -c when --profile: one cProfile per worker, dumped at exit.
PROFILE_HOOKS = """
import cProfile, os, time
def post_fork(server, worker):
    worker.profile = cProfile.Profile(time.process_time)
    worker.profile.enable()
def worker_exit(server, worker):
    worker.profile.disable()
    worker.profile.dump_stats(os.environ["BENCH_PROFILE"] + f".{os.getpid()}")
"""
PER_USER_LIMIT = 100
TOP_RATE = 8_000  # purchases a second one worker could plausibly answer, to size the buyers


def prepare(env: dict, buyers: int) -> tuple[str, list[str]]:
    """A migrated database with a sale of ten million units and ``buyers`` buyers."""
    os.environ.update(env)
    from flask_migrate import upgrade

    from flashsale.app import create_app
    from tests.factories import make_sale

    app = create_app("test")
    with app.app_context():
        upgrade()
        client = app.test_client()
        sale = make_sale(client, stock=10_000_000, per_user_limit=PER_USER_LIMIT)
        tokens = [
            client.post("/api/v1/users", json={"name": f"b{n}"}).get_json()["token"]
            for n in range(buyers)
        ]
    return sale["id"], tokens


def batch_counts(port: int) -> tuple[float, float]:
    """(commands, writes) the worker's redis batcher has sent so far, from its /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = dict.fromkeys(("sum", "count"), 0.0)
    for suffix in values:
        if match := re.search(rf"^spillway_redis_batch_commands_{suffix} (\S+)$", text, re.M):
            values[suffix] = float(match.group(1))
    return values["sum"], values["count"]


def run_target(lab, name: str, url: str, script: Path, env: dict, args) -> dict:
    """One fresh gunicorn (one gevent worker), a warm-up, then a measured wrk run."""
    profile_base = lab.work / f"{name.replace(' ', '-')}-{time.monotonic_ns()}.prof"
    options = ["--worker-connections", "4096"]
    if args.profile:
        options += ["-c", str(lab.work / "profile_hooks.py")]
        env = {**env, "BENCH_PROFILE": str(profile_base)}
    server = lab.start(
        gunicorn_server(lab.logs, {**os.environ, **env}, *options, workers=1), timeout=20
    )
    try:
        target = url.replace("PORT", str(server.port))
        # Fresh Idempotency-Keys every run (printable ASCII, no spaces: docs/api.md).
        tag = f"{''.join(c for c in name if c.isalnum())}-{time.monotonic_ns()}"
        wrk.run(target, args.connections, 2, script, script_args=(tag + "w",))
        batches_before = batch_counts(server.port)
        result = wrk.run(
            target,
            args.connections,
            args.seconds,
            script,
            script_args=(tag,),
            server_pid=server.process.pid,
        )
        commands, batches = (a - b for a, b in zip(batch_counts(server.port), batches_before))
    finally:
        server.stop()
    return {
        "name": name,
        "rps": result.rps,
        "non_2xx": result.non_2xx,
        "p99_ms": result.p99_ms,
        "cpu_us": result.cpu_us_per_request,
        "per_write": commands / batches if batches else None,
        "profile": profile_base,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--hub-monitor", action="store_true", help="compare the blocked-hub detector on and off"
    )
    parser.add_argument(
        "--durability", action="store_true", help="compare the redis durability policies"
    )
    parser.add_argument("--close", action="store_true", help="one request per connection")
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions")
    args = parser.parse_args()
    results = []
    with session("purchase-cpu") as lab:
        redis_server = lab.start(start_redis(lab.logs))
        memcached = lab.start(start_memcached(lab.logs))
        if args.durability:
            lab.start(start_replica(lab.logs, redis_server))
        env = {
            **service_environment(
                f"127.0.0.1:{redis_server.port}",
                f"127.0.0.1:{memcached.port}",
                f"sqlite:///{lab.work / 'bench.db'}",
                lab.work,
            ),
            "SPILLWAY_LOG_LEVEL": "WARNING",
            "SPILLWAY_ENV": "prd",
            "SPILLWAY_SECRET_KEY": "bench-" + "k" * 40,
            "SPILLWAY_PROXY_HOPS": "0",
        }
        (lab.work / "profile_hooks.py").write_text(PROFILE_HOOKS)
        # Every purchase takes one unit from a buyer: enough buyers that none reaches the limit.
        purchases = 2 * args.rounds * (args.seconds + 2) * TOP_RATE
        sale_id, tokens = prepare(env, max(1000, purchases // PER_USER_LIMIT))
        # The servers run prd, which wants an admin token of 32+ characters; the set-up's
        # test app used the suite's.
        served = {**env, "SPILLWAY_ADMIN_TOKEN": secrets.token_urlsafe(32)}
        close = {"Connection": "close"} if args.close else {}
        scripts = {
            method: wrk.write_purchase_script(
                lab.work / f"{method}.lua", tokens, method, replay_every=0, headers=close
            )
            for method in ("POST", "GET")
        }
        purchase = f"http://127.0.0.1:PORT/api/v1/sales/{sale_id}/orders"
        hello = "http://127.0.0.1:PORT/demo/index"
        if args.hub_monitor:
            targets = hub_monitor_targets(hello, purchase, scripts)
        elif args.durability:
            targets = durability_targets(hello, purchase, scripts, redis_server.port)
        else:
            targets = batching_targets(hello, purchase, scripts)
        for round_ in range(1, args.rounds + 1):
            for name, url, script, own_env in targets:
                result = run_target(lab, name, url, script, {**served, **own_env}, args)
                results.append(result)
                print(
                    f"round {round_}: {name}: {result['rps']:,.0f} req/s, "
                    f"{result['cpu_us']:.0f} CPU µs/req, non-2xx {result['non_2xx']}",
                    flush=True,
                )
        best = {
            name: min((r for r in results if r["name"] == name), key=lambda r: r["cpu_us"])
            for name, *_ in targets
        }
        report(best, lab.work, args.profile)
    return 1 if any(r["non_2xx"] for r in results) else 0


def batching_targets(hello: str, purchase: str, scripts: dict) -> list[tuple]:
    """The hello, and the purchase with redis auto-pipelining on and off."""
    return [
        ("bare hello", hello, scripts["GET"], {}),
        ("purchase, batching on", purchase, scripts["POST"], {}),
        ("purchase, batching off", purchase, scripts["POST"], {"SPILLWAY_REDIS_BATCHING": "off"}),
    ]


def hub_monitor_targets(hello: str, purchase: str, scripts: dict) -> list[tuple]:
    """The hello and the purchase, each with the blocked-hub detector on and off."""
    return [
        (f"{what}, detector {state}", url, scripts[method], {"SPILLWAY_HUB_MONITOR": state})
        for what, url, method in (("bare hello", hello, "GET"), ("purchase", purchase, "POST"))
        for state in ("on", "off")
    ]


def durability_targets(hello: str, purchase: str, scripts: dict, redis_port: int) -> list:
    """The hello, and the purchase under each durability policy this redis can keep."""
    version = redis.Redis(port=redis_port).info("server")["redis_version"]
    policies = ["none", "replica"] + (["fsync"] if _version(version) >= (7, 2) else [])
    if "fsync" not in policies:
        print(f"redis {version} has no WAITAOF: fsync left out", flush=True)
    return [("bare hello", hello, scripts["GET"], {})] + [
        (f"purchase, {policy}", purchase, scripts["POST"], {"SPILLWAY_REDIS_DURABILITY": policy})
        for policy in policies
    ]


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def report(best: dict, work: Path, profile: bool) -> None:
    hello = best.get("bare hello") or best["bare hello, detector off"]
    print("\nbest of each (lowest CPU per request):")
    print(
        table(
            [
                "target",
                "req/s",
                "CPU µs/req",
                "hello CPU ÷ this",
                "req/s ÷ hello",
                "purchases per redis write",
            ],
            [
                [
                    name,
                    f"{r['rps']:,.0f}",
                    f"{r['cpu_us']:.0f}",
                    f"{hello['cpu_us'] / r['cpu_us']:.2f}",
                    f"{r['rps'] / hello['rps']:.2f}",
                    f"{r['per_write']:.1f}" if r["per_write"] else "–",
                ]
                for name, r in best.items()
            ],
        )
    )
    if any(r["non_2xx"] for r in best.values()):
        print("\nsome answers were not 2xx: the figures are not of real reservations")
    for name, result in best.items() if profile else ():
        stream = io.StringIO()
        dumps = sorted(str(p) for p in work.glob(result["profile"].name + ".*"))
        pstats.Stats(*dumps, stream=stream).sort_stats("tottime").print_stats(25)
        print(f"\n===== {name}\n{stream.getvalue()}")


if __name__ == "__main__":
    raise SystemExit(main())
