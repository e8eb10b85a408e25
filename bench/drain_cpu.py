"""CPU per order of the outbox drain, in process: N reservations queued by reserve.lua on a
real redis, then the drain's own loop (flashsale.orders.tasks._drain_new) into a fresh
SQLite file or PostgreSQL database, timed, with the worker's CPU and redis's per order.

Why this bench: the harness's drain runs the whole stack on a shared 2-core machine, where
its orders/s move with the neighbours. The CPU a drainer spends per order, and what redis
spends for it (its used_cpu, and each command's share from INFO commandstats), are steadier
and say where the time goes. ``--profile`` adds cProfile's top functions (the profiler
inflates call-heavy code: read shares, not absolute times). ``--processes 2`` forks that
many drainers on the same outbox (as two Celery processes drain it).

Run from the repository root: ``.venv/bin/python bench/drain_cpu.py [--orders 20000]
[--ledger sqlite|postgresql] [--processes 1] [--profile]``.
"""

import argparse
import cProfile
import os
import pstats
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import harness  # noqa: F401  (puts the repository root on the path, for tests/)
import redis

from tests.environment import service_environment
from tests.postgres import LIKE_THE_SQLITE_LEDGER
from tests.postgres import start_postgres
from tests.servers import start_memcached
from tests.servers import start_redis

BUYERS = 1000


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--ledger", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    return parser.parse_args()


def main() -> None:
    options = parse()
    work = Path(tempfile.mkdtemp(prefix="spillway-bench-drain-"))
    servers = [start_redis(work), start_memcached(work)]
    try:
        url = f"sqlite:///{work / 'ledger.db'}"
        if options.ledger == "postgresql":
            cluster = start_postgres(work, LIKE_THE_SQLITE_LEDGER)
            servers.append(cluster)
            url = cluster.url(cluster.create_database())
        redis_port, memcached_port = servers[0].port, servers[1].port
        os.environ.update(
            service_environment(
                f"127.0.0.1:{redis_port}", f"127.0.0.1:{memcached_port}", url, work / "run"
            )
        )
        measure(options, redis.Redis(port=redis_port))
    finally:
        for server in reversed(servers):
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


def measure(options: argparse.Namespace, client: redis.Redis) -> None:
    from flask_migrate import upgrade

    from flashsale.app import create_app
    from flashsale.extensions import db
    from flashsale.orders import tasks
    from tests.factories import make_sale

    app = create_app("test")
    with app.app_context():
        upgrade()
        count = options.orders
        sale = make_sale(app.test_client(), stock=count, per_user_limit=-(-count // BUYERS))
        fill(client, int(sale["id"]), count)
        tasks.outbox.ensure_group()
        client.config_resetstat()
        redis_before = redis_cpu(client)
        profile = cProfile.Profile() if options.profile else None
        started, cpu = time.perf_counter(), time.process_time()
        if profile:
            profile.enable()
        if options.processes == 1:
            tasks._drain_new(tasks.outbox.consumer(), time.monotonic() + 600)
        else:
            fork_drainers(options.processes, db, tasks)
        if profile:
            profile.disable()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        redis_spent = redis_cpu(client) - redis_before
        db.session.rollback()
        stored = db.session.execute(db.text("SELECT COUNT(*) FROM orders")).scalar_one()
        per = 1e6 / count
        print(
            f"{options.ledger}, {options.processes} drainer(s): {stored:,} of {count:,} orders "
            f"in {seconds:.2f} s = {count / seconds:,.0f}/s; per order {seconds * per:.1f} µs "
            f"wall, {redis_spent * per:.1f} µs of redis CPU"
            + (f", {cpu * per:.1f} µs of drainer CPU" if options.processes == 1 else "")
        )
        shares = sorted(
            ((name[8:], stats["usec"] / count) for name, stats in commandstats(client)),
            key=lambda item: -item[1],
        )
        print("redis µs per order:", ", ".join(f"{name} {usec:.1f}" for name, usec in shares[:8]))
        if profile:
            pstats.Stats(profile).sort_stats("cumulative").print_stats(30)
        db.session.remove()
        db.engine.dispose()


def fill(client: redis.Redis, sale_id: int, count: int) -> None:
    from flashsale.sales.stock import LUA_DIR
    from flashsale.sales.stock import reserve_call

    script = client.register_script((LUA_DIR / "reserve.lua").read_bytes())
    now_ms = int(time.time() * 1000)
    for start in range(0, count, 1000):
        pipe = client.pipeline(transaction=False)
        for n in range(start, min(count, start + 1000)):
            keys, args = reserve_call(
                sale_id, str(n % BUYERS + 1), 1, f"drain-{n}", now_ms, str(uuid.uuid4())
            )
            script(keys=keys, args=args, client=pipe)
        assert all(reply[0] == b"reserved" for reply in pipe.execute())


def fork_drainers(processes: int, db, tasks) -> None:
    db.session.remove()
    db.engine.dispose()
    children = []
    for n in range(processes):
        pid = os.fork()
        if pid == 0:  # a drainer of its own, as a Celery process is
            db.engine.dispose(close=False)
            try:
                tasks._drain_new(f"{tasks.outbox.consumer()}-{n}", time.monotonic() + 600)
            finally:
                os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)


def redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return info["used_cpu_sys"] + info["used_cpu_user"]


def commandstats(client: redis.Redis):
    return client.info("commandstats").items()


if __name__ == "__main__":
    main()
