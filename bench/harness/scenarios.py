"""The five scenarios. Each takes the lab, the profile, the progress and a results dict it
fills in; measurements of one scenario run side by side, the order of the targets
alternating from one concurrency to the next so that none always runs first."""

import time
import uuid
from contextlib import suppress
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import redis
import requests
from celery import Celery

from flashsale.orders.outbox import DRAIN_TASK
from flashsale.sales.stock import LUA_DIR
from flashsale.sales.stock import reserve_call
from harness import audit
from harness import cpu
from harness import sse
from harness import wrk
from harness.lab import Lab
from harness.lab import check_get
from tests.postgres import LIKE_THE_SQLITE_LEDGER
from tests.postgres import start_postgres
from tests.waiting import NotYet
from tests.waiting import wait_until

PRODUCT = "/api/v1/products/1"
# Beat stopped, the drain waits this long before queueing: a tick beat sent just before it
# stopped reaches the idle worker (and finds nothing) well within it.
BEAT_TICKS_EXPIRE_S = 2.0


@dataclass(frozen=True)
class Profile:
    name: str
    seconds: int  # each measured wrk run
    connections: tuple[int, ...]  # the sweep of the compared paths
    baseline_connections: tuple[int, ...]  # the sweep of the extra baselines
    buyers: int
    sellout_stock: int
    drain_orders: int
    streams: int  # sse-fanout
    # slow-isolation: this many /demo/slow?seconds=slow_seconds held open by one wrk for
    # slow_hold_seconds; /demo/index measured by a second for index_seconds, once
    # index_delay_seconds have let the slow ones in.
    slow_requests: int = 1000
    slow_seconds: int = 10
    slow_hold_seconds: int = 25
    index_seconds: int = 10
    index_delay_seconds: int = 3
    pause: float = 1.0


FULL = Profile("full", 10, (16, 64, 256, 1024), (64, 256), 4000, 2000, 100_000, 10_000)
QUICK = Profile(
    "quick",
    2,
    (64, 256),
    (256,),
    500,
    300,
    20_000,
    1000,
    slow_seconds=4,
    slow_hold_seconds=9,
    index_seconds=3,
    index_delay_seconds=2,
    pause=0.3,
)


@dataclass
class Target:
    name: str
    url: str
    headers: dict = field(default_factory=dict)
    baseline: bool = False  # measured on the shorter sweep
    server: str = "gunicorn"  # whose CPU per request is measured (Lab.pid_of)


def sweep(profile: Profile, targets: list[Target], measure, progress) -> None:
    """Every target at every concurrency of its sweep, order alternating."""
    for index, connections in enumerate(profile.connections):
        order = targets if index % 2 == 0 else list(reversed(targets))
        for target in order:
            wanted = profile.baseline_connections if target.baseline else profile.connections
            if connections in wanted:
                progress.step(f"{target.name} at {connections} connections")
                measure(target, connections)
                time.sleep(profile.pause)


# ---------------------------------------------------------------------- catalog-hot


def catalog_hot(lab, profile: Profile, progress, results: dict) -> None:
    """The catalog's three paths beside the static ceiling, the bare view and the peer."""
    progress.step("starting the stack, the peer and the baselines")
    lab.stack  # noqa: B018  (started first: the admin token comes from it)
    no_cache = {**lab.admin, "Cache-Control": "no-cache"}
    peer = "peer-uvicorn"
    targets = [
        Target("nginx static (ceiling)", lab.url + "/static/site.css", server="nginx"),
        Target("nginx → memcached", lab.url + PRODUCT, server="nginx"),
        Target("Flask, memcached hit", lab.url + PRODUCT + "?via=app"),
        Target("Flask, database", lab.url + PRODUCT + "?via=db", no_cache),
        Target("bare hello (gevent)", lab.url + "/demo/index"),
        Target("peer: product, memcached", lab.peer_url + PRODUCT, server=peer),
        Target(
            "peer: product, memcached, keep-alive", lab.peer_keepalive_url + PRODUCT, server=peer
        ),
        Target(
            "Flask, memcached hit, keep-alive",
            lab.keepalive_url + PRODUCT + "?via=app",
            baseline=True,
        ),
        Target(
            "peer: product, database",
            lab.peer_url + PRODUCT,
            {"Cache-Control": "no-cache"},
            baseline=True,
            server=peer,
        ),
        Target("peer: hello", lab.peer_url + "/hello", baseline=True, server=peer),
        Target(
            "gunicorn sync: hello",
            lab.sync_url + "/demo/index",
            baseline=True,
            server="gunicorn-sync",
        ),
        Target(
            "app.run: hello", lab.naive_seed_url + "/demo/index", baseline=True, server="naive-seed"
        ),
    ]
    for target in targets:
        check_get(target.url, headers=target.headers)
    served = requests.get(lab.url + PRODUCT, timeout=10).headers
    if served.get("X-Served-By") != "nginx-memcached":
        raise RuntimeError(f"the fast path is not nginx's: {dict(served)}")
    script = wrk.write_get_script(lab.work / "get.lua")
    runs = results.setdefault("runs", [])

    def measure(target: Target, connections: int) -> None:
        runs.append(
            wrk.run(
                target.url,
                connections,
                profile.seconds,
                script,
                scenario="catalog-hot",
                target=target.name,
                headers=target.headers,
                server_pid=lab.pid_of(target.server),
            ).to_dict()
        )

    sweep(profile, targets, measure, progress)


# ---------------------------------------------------------------------- purchase-burst


def purchase_burst(lab, profile: Profile, progress, results: dict) -> None:
    """Purchase admission (ours and the peer's, each audited), the bare view with the same
    wrk script, the naive row-lock purchase; then a sell-out burst on each."""
    progress.step(f"signing up {profile.buyers:,} buyers")
    tokens = lab.buyers(profile.buyers)
    post = wrk.write_purchase_script(lab.work / "purchase.lua", tokens)
    get = wrk.write_purchase_script(lab.work / "purchase-get.lua", tokens, "GET")
    ids_dir = lab.work / "ids"
    ids_dir.mkdir(exist_ok=True)
    targets = [
        Target("spillway purchase", lab.url),
        Target("peer purchase", lab.peer_url, server="peer-uvicorn"),
        Target("peer purchase, keep-alive", lab.peer_keepalive_url, server="peer-uvicorn"),
        Target("bare hello (gevent), same script", lab.url + "/demo/index"),
        Target(
            "naive row-lock purchase", lab.naive_purchase_url + "/purchase", server="naive-purchase"
        ),
    ]
    runs = results.setdefault("runs", [])
    audits = results.setdefault("audits", [])

    def burst(target: Target, connections: int, stock: int, per_user: int, label: str) -> None:
        tag = f"r{len(runs)}-{int(time.time()) % 100_000}"  # keys: printable, ≤ 64 chars
        prefix = ids_dir / tag
        sale = None
        if "purchase" in target.name and "naive" not in target.name:
            sale = lab.new_sale(stock, per_user)
            url = f"{target.url}/api/v1/sales/{sale['id']}/orders"
        else:
            url = target.url
        script = get if "hello" in target.name else post
        run = wrk.run(
            url,
            connections,
            profile.seconds,
            script,
            scenario="purchase-burst",
            target=label,
            script_args=(tag, str(prefix)),
            server_pid=lab.pid_of(target.server),
        )
        runs.append(run.to_dict())
        if sale is not None:
            progress.step(f"audit of {label} at {connections} connections (sale {sale['id']})")
            accepted, replayed = wrk.order_ids(prefix)
            checked = audit.audit_burst(
                lab, f"{label} -c{connections}", sale, accepted, replayed, run.statuses
            )
            if label.startswith("sell-out"):
                if checked["persisted"] != stock:
                    checked["failures"].append(
                        f"sold {checked['persisted']} of {stock} units "
                        f"in a burst of {run.requests:,} requests"
                    )
            else:  # stock and limits to spare: every answer is a 202 or a replay's 200
                odd = {s: n for s, n in run.statuses.items() if s not in ("200", "202")}
                if odd:
                    checked["failures"].append(
                        f"answers other than 202/200 with stock to spare: {odd}"
                    )
            checked["ok"] = not checked["failures"]
            audits.append(checked)
            if not checked["ok"]:
                print(f"INVARIANT VIOLATED in {label}: {checked['failures']}", flush=True)

    sweep(
        profile,
        targets,
        lambda target, connections: burst(target, connections, 10_000_000, 100, target.name),
        progress,
    )
    connections = max(c for c in profile.connections if c <= 256)
    for target in targets[:2]:
        label = f"sell-out: {target.name}"
        progress.step(
            f"{label}: {profile.sellout_stock} units, {len(tokens):,} buyers "
            f"(limit 2), {connections} connections"
        )
        burst(target, connections, profile.sellout_stock, 2, label)


# ---------------------------------------------------------------------- slow-isolation


def slow_isolation(lab, profile: Profile, progress, results: dict) -> None:
    """/demo/index while 1,000 long /demo/slow are in flight: ours, app.run, gunicorn sync."""
    servers = [
        ("spillway (nginx → gunicorn gevent)", lambda: lab.url, None),
        ("app.run (the seed's server)", lambda: lab.naive_seed_url, lab.stop_naive_seed),
        ("gunicorn sync ×2", lambda: lab.sync_url, lab.stop_sync),
    ]
    rows = results.setdefault("rows", [])
    results["setup"] = {
        "slow_requests": profile.slow_requests,
        "slow_seconds": profile.slow_seconds,
        "hold_seconds": profile.slow_hold_seconds,
        "index_seconds": profile.index_seconds,
    }
    for name, url, stop in servers:
        progress.step(
            f"{name}: {profile.slow_requests:,} × /demo/slow?seconds="
            f"{profile.slow_seconds} in flight, /demo/index measured"
        )
        rows.append({"server": name, **index_under_slow_flood(url(), profile)})
        if stop:
            stop()  # its sleeping threads or workers would linger into the next measurement


def index_under_slow_flood(base_url: str, profile: Profile) -> dict:
    """Index latency with the slow requests in flight; the slow wrk runs on throughout
    (its timeout generous: a slow answer late is counted, not a wrk timeout)."""
    slow = wrk.start(
        f"{base_url}/demo/slow?seconds={profile.slow_seconds}",
        profile.slow_requests,
        profile.slow_hold_seconds,
        profile.slow_seconds + 20,
    )
    try:
        time.sleep(profile.index_delay_seconds)  # let all the slow requests get in
        slow_open = open_connections_to(int(base_url.rsplit(":", 1)[1]))
        index = wrk.run(f"{base_url}/demo/index", 8, profile.index_seconds)
        flood = wrk.finish(slow, profile.slow_hold_seconds + 30)
    finally:
        if slow.poll() is None:
            slow.kill()
            slow.wait()
    return {"slow_open": slow_open, "index": wrk_result(index), "slow": wrk_result(flood)}


def open_connections_to(port: int) -> int:
    """Established client-side TCP connections to 127.0.0.1:port (wrk's open sockets),
    counted from /proc/net/tcp: this shows whether the slow requests really were in flight."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port = int(fields[2].rsplit(":", 1)[1], 16)
        if fields[3] == "01" and remote_port == port:  # 01 = ESTABLISHED
            count += 1
    return count


def wrk_result(result: wrk.Run) -> dict:
    return {
        "requests": result.requests,
        "rps": result.rps,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "max_ms": result.max_ms,
        "timeouts": result.timeouts,
        "socket_errors": result.socket_errors,
        "non_2xx": result.non_2xx,
    }


# ---------------------------------------------------------------------- drain


def drain(lab, profile: Profile, progress, results: dict) -> None:
    """N reservations waiting in the outbox (made by reserve.lua itself, beat stopped, the
    Celery worker up and idle), then the nudge a reservation into an idle outbox sends and
    beat started: time until all N are orders, in the stack's SQLite ledger, then in a
    PostgreSQL ledger (a cluster and a stack of their own)."""
    results["sqlite"] = drain_into(lab, profile, progress, "SQLite")
    progress.step("PostgreSQL: a cluster of its own (as durable as SQLite) and a stack on it")
    cluster = start_postgres(lab.logs, LIKE_THE_SQLITE_LEDGER)
    (lab.work / "pg").mkdir(exist_ok=True)
    own = Lab(lab.work / "pg", stack_env={"DATABASE_URL": cluster.url(cluster.create_database())})
    try:
        results["postgresql"] = drain_into(
            own, profile, progress, "PostgreSQL", cluster.server.process.pid
        )
    finally:
        audit.close_ledger(own)
        own.stop_all()
        cluster.stop()


def drain_into(
    lab, profile: Profile, progress, ledger: str, database_pid: int | None = None
) -> dict:
    """One drain into the lab's ledger; with the CPU per order of the worker, redis and
    the database server (``database_pid``'s tree), steadier here than orders/s."""
    count = profile.drain_orders
    buyers = min(1000, max(profile.buyers, 1000))
    lab.buyers(buyers)  # user ids 1…buyers exist: orders reference them
    sale = lab.new_sale(count, max(1, -(-count // buyers)))
    lab.wait_drained()  # the sign-ups' and sale's own work done: the worker is idle
    progress.step(f"{ledger}: stopping Celery beat (the worker stays up, idle)")
    lab.supervisorctl("stop", "celery-beat")
    time.sleep(BEAT_TICKS_EXPIRE_S)  # a tick beat sent before it stopped has been taken
    nudge = drain_nudger(lab)
    try:
        progress.step(f"{ledger}: queueing {count:,} reservations through reserve.lua")
        order_ids = fill_outbox(lab, int(sale["id"]), count, buyers)
        early = audit.count_orders(lab, sale["id"])  # persisted before the drain was asked
    finally:
        progress.step(f"{ledger}: the drain (a nudge, and beat started)")
        pids = {name: lab.stack.program_pid(name) for name in ("celery-worker", "redis")}
        meters = {
            name: cpu.Meter(pid).start()
            for name, pid in {**pids, "database": database_pid}.items()
            if pid
        }
        started = time.monotonic()
        nudge()
        lab.supervisorctl("start", "celery-beat")
    seen = {"persisted": 0}

    def all_persisted() -> bool:
        seen["persisted"] = persisted = audit.count_orders(lab, sale["id"])
        if persisted > early and "first" not in seen:
            seen.update(first=time.monotonic(), first_count=persisted)
        return persisted >= count

    with suppress(NotYet):  # the goals judge what was persisted by then
        wait_until(all_persisted, 300, 0.05)
    finished = time.monotonic()
    used = {name: meter.stop() for name, meter in meters.items()}
    # The rate once persisting: from the first poll that saw orders (not counting those).
    persisted = seen["persisted"]
    persisting = finished - seen.get("first", started)
    results = dict(
        ledger=ledger,
        orders=count,
        persisted=persisted,
        persisted_before_the_drain=early,
        seconds_from_start=finished - started,
        seconds_from_first=persisting,
        rate_from_start=(persisted - early) / (finished - started),
        rate_from_first=(persisted - seen.get("first_count", 0)) / persisting
        if persisting > 0.2
        else (persisted - early) / (finished - started),
    )
    drained = max(persisted - early, 1)
    results["cpu_us_per_order"] = {
        name: seconds * 1e6 / drained for name, seconds in used.items() if seconds is not None
    }
    progress.step(f"{ledger}: audit of the drained sale")
    results["audit"] = audit.audit_burst(
        lab, f"drain ({ledger})", sale, order_ids, [], {"202": count}
    )
    return results


def drain_nudger(lab):
    """A function that sends the drain task by name, as the web tier does when a
    reservation finds the outbox idle (flashsale.orders.outbox.nudge_drain), connected
    beforehand so that the clock measures the drain, not the connection."""
    app = Celery(broker=lab.stack.environment()["SPILLWAY_BROKER_URL"], set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"])
    connection = app.connection_for_write()
    connection.ensure_connection(max_retries=3)

    def nudge() -> None:
        try:
            app.send_task(DRAIN_TASK, expires=30, connection=connection)
        finally:
            connection.release()

    return nudge


def fill_outbox(lab, sale_id: int, count: int, buyers: int) -> list[str]:
    client = redis.Redis(unix_socket_path=str(lab.stack.paths.redis_socket))
    script = client.register_script((LUA_DIR / "reserve.lua").read_bytes())
    now_ms = int(time.time() * 1000)
    order_ids = []
    for start in range(0, count, 1000):
        pipe = client.pipeline(transaction=False)
        for n in range(start, min(count, start + 1000)):
            order_id = str(uuid.uuid4())
            keys, args = reserve_call(
                sale_id, str(n % buyers + 1), 1, f"drain-{n}", now_ms, order_id
            )
            script(keys=keys, args=args, client=pipe)
            order_ids.append(order_id)
        refused = [reply for reply in pipe.execute() if reply[0] != b"reserved"]
        if refused:
            raise RuntimeError(f"reserve.lua refused while filling the outbox: {refused[:3]}")
    return order_ids


# ---------------------------------------------------------------------- sse-fanout


def sse_fanout(lab, profile: Profile, progress, results: dict) -> None:
    """harness/sse.py (bench/sse_fanout.py's measurement) on a stack of its own with one
    gunicorn worker; ours is stopped first."""
    lab.stop_all()
    (lab.work / "sse").mkdir(exist_ok=True)
    own = Lab(lab.work / "sse", stack_args=sse.stack_args(profile.streams))
    try:
        progress.step(f"{profile.streams:,} streams on one worker (its own stack)")
        results.update(sse.measure(own, profile.streams, 10 if profile.name == "full" else 5))
    finally:
        own.stop_all()


SCENARIOS = {
    "catalog-hot": catalog_hot,
    "purchase-burst": purchase_burst,
    "slow-isolation": slow_isolation,
    "drain": drain,
    "sse-fanout": sse_fanout,
}


def estimate(name: str, profile: Profile) -> float:
    """Seconds a scenario should take (for the ETA)."""
    per_run = profile.seconds + profile.pause + 0.5
    conns, baseline = len(profile.connections), len(profile.baseline_connections)
    return {
        "catalog-hot": 15 + per_run * (7 * conns + 5 * baseline),
        "purchase-burst": 5
        + profile.buyers / 50
        + per_run * 5 * conns
        + 3 * 2 * conns
        + 2 * (per_run + 2),
        "slow-isolation": 3 * (profile.slow_hold_seconds + 2),
        "drain": 60 + 2 * (5 + profile.drain_orders / 8000),
        "sse-fanout": 90 if profile.name == "quick" else 300,
    }[name]
