"""The five scenarios. Each takes the lab, the profile, the progress and a results dict it
fills in; measurements of one scenario run side by side, the order of the targets
alternating from one concurrency to the next so that none always runs first."""

import json
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import foundation
import redis
import requests
from foundation import PYTHON
from foundation import REPO_ROOT

from flashsale.sales.stock import LUA_DIR
from flashsale.sales.stock import reserve_call
from harness import audit
from harness import wrk
from harness.lab import check_get

PRODUCT = "/api/v1/products/1"
SSE_SCRIPT = REPO_ROOT / "bench" / "sse_fanout.py"


@dataclass(frozen=True)
class Profile:
    name: str
    seconds: int  # each measured wrk run
    connections: tuple[int, ...]  # the sweep of the compared paths
    baseline_connections: tuple[int, ...]  # the sweep of the extra baselines
    buyers: int
    sellout_stock: int
    slow: foundation.Profile
    drain_orders: int
    pause: float = 1.0


FULL = Profile("full", 10, (16, 64, 256, 1024), (64, 256), 4000, 2000,
               foundation.FULL, 100_000)
QUICK = Profile("quick", 2, (64, 256), (256,), 500, 300,
                foundation.Profile("quick", run_seconds=3, slow_requests=1000, slow_seconds=4,
                                   slow_hold_seconds=9, index_delay_seconds=2, rounds=1),
                20_000, pause=0.3)


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
        Target("peer: product, memcached, keep-alive", lab.peer_keepalive_url + PRODUCT,
               server=peer),
        Target("Flask, memcached hit, keep-alive", lab.keepalive_url + PRODUCT + "?via=app",
               baseline=True),
        Target("peer: product, database", lab.peer_url + PRODUCT,
               {"Cache-Control": "no-cache"}, baseline=True, server=peer),
        Target("peer: hello", lab.peer_url + "/hello", baseline=True, server=peer),
        Target("gunicorn sync: hello", lab.sync_url + "/demo/index", baseline=True,
               server="gunicorn-sync"),
        Target("app.run: hello", lab.naive_seed_url + "/demo/index", baseline=True,
               server="naive-seed"),
    ]
    for target in targets:
        check_get(target.url, headers=target.headers)
    served = requests.get(lab.url + PRODUCT, timeout=10).headers
    if served.get("X-Served-By") != "nginx-memcached":
        raise RuntimeError(f"the fast path is not nginx's: {dict(served)}")
    script = wrk.write_get_script(lab.work / "get.lua")
    runs = results.setdefault("runs", [])

    def measure(target: Target, connections: int) -> None:
        runs.append(wrk.run("catalog-hot", target.name, target.url, connections,
                            profile.seconds, script, target.headers,
                            server_pid=lab.pid_of(target.server)).to_dict())

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
        Target("naive row-lock purchase", lab.naive_purchase_url + "/purchase",
               server="naive-purchase"),
    ]
    runs = results.setdefault("runs", [])
    audits = results.setdefault("audits", [])

    def burst(target: Target, connections: int, stock: int, per_user: int,
              label: str) -> None:
        tag = f"r{len(runs)}-{int(time.time()) % 100_000}"  # keys: printable, ≤ 64 chars
        prefix = ids_dir / tag
        sale = None
        if "purchase" in target.name and "naive" not in target.name:
            sale = lab.new_sale(stock, per_user)
            url = f"{target.url}/api/v1/sales/{sale['id']}/orders"
        else:
            url = target.url
        script = get if "hello" in target.name else post
        run = wrk.run("purchase-burst", label, url, connections, profile.seconds, script,
                      script_args=(tag, str(prefix)), server_pid=lab.pid_of(target.server))
        runs.append(run.to_dict())
        if sale is not None:
            progress.step(f"audit of {label} at {connections} connections (sale {sale['id']})")
            accepted, replayed = wrk.order_ids(prefix)
            checked = audit.audit_burst(lab, f"{label} -c{connections}", sale, accepted,
                                        replayed, run.statuses)
            if label.startswith("sell-out"):
                checked.check(checked.persisted == stock,
                              f"sold {checked.persisted} of {stock} units in a burst of "
                              f"{run.requests:,} requests")
            else:  # stock and limits to spare: every answer is a 202 or a replay's 200
                odd = {s: n for s, n in run.statuses.items() if s not in ("200", "202")}
                checked.check(not odd, f"answers other than 202/200 with stock to spare: {odd}")
            audits.append(checked.to_dict())
            if not checked.ok:
                print(f"INVARIANT VIOLATED in {label}: {checked.failures}", flush=True)

    sweep(profile, targets, lambda target, connections: burst(
        target, connections, 10_000_000, 100, target.name), progress)
    connections = max(c for c in profile.connections if c <= 256)
    for target in targets[:2]:
        label = f"sell-out: {target.name}"
        progress.step(f"{label}: {profile.sellout_stock} units, {len(tokens):,} buyers "
                      f"(limit 2), {connections} connections")
        burst(target, connections, profile.sellout_stock, 2, label)


# ---------------------------------------------------------------------- slow-isolation

def slow_isolation(lab, profile: Profile, progress, results: dict) -> None:
    """/demo/index while 1,000 long /demo/slow are in flight: ours, app.run, gunicorn sync."""
    slow = profile.slow
    servers = [("spillway (nginx → gunicorn gevent)", lambda: lab.url, lambda: lab.stack.port,
                None),
               ("app.run (the seed's server)", lambda: lab.naive_seed_url,
                lambda: int(lab.naive_seed_url.rsplit(":", 1)[1]), lab.stop_naive_seed),
               ("gunicorn sync ×2", lambda: lab.sync_url,
                lambda: int(lab.sync_url.rsplit(":", 1)[1]), lab.stop_sync)]
    rows = results.setdefault("rows", [])
    results["setup"] = {"slow_requests": slow.slow_requests, "slow_seconds": slow.slow_seconds,
                        "hold_seconds": slow.slow_hold_seconds,
                        "index_seconds": slow.run_seconds}
    for name, url, port, stop in servers:
        progress.step(f"{name}: {slow.slow_requests:,} × /demo/slow?seconds="
                      f"{slow.slow_seconds} in flight, /demo/index measured")
        measured = foundation.slow_isolation(name, url(), port(), slow)
        rows.append({"server": name, "slow_open": measured.slow_open,
                     "index": wrk_result(measured.index), "slow": wrk_result(measured.slow)})
        if stop:
            stop()  # its sleeping threads or workers would linger into the next measurement


def wrk_result(result) -> dict:
    answered = result.requests > 0  # else wrk prints zero latencies
    return {"requests": result.requests, "rps": result.rps,
            "p50_ms": result.p50_ms if answered else None,
            "p99_ms": result.p99_ms if answered else None,
            "max_ms": result.max_ms if answered else None, "timeouts": result.timeouts,
            "socket_errors": result.connect_errors + result.read_errors + result.write_errors,
            "non_2xx": result.non_2xx}


# ---------------------------------------------------------------------- drain

def drain(lab, profile: Profile, progress, results: dict) -> None:
    """N reservations waiting in the outbox (made by reserve.lua itself, workers stopped),
    then the Celery worker started: time until all N are orders in SQLite."""
    count = profile.drain_orders
    buyers = min(1000, max(profile.buyers, 1000))
    lab.buyers(buyers)  # user ids 1…buyers exist: orders reference them
    sale = lab.new_sale(count, max(1, -(-count // buyers)))
    progress.step("stopping the Celery worker and beat")
    lab.supervisorctl("stop", "celery-beat", "celery-worker")
    try:
        progress.step(f"queueing {count:,} reservations through reserve.lua")
        order_ids = fill_outbox(lab, int(sale["id"]), count, buyers)
    finally:
        progress.step("starting the Celery worker and beat: the drain")
        started = time.monotonic()
        lab.supervisorctl("start", "celery-worker", "celery-beat")
    first, first_count, persisted = None, 0, 0
    while time.monotonic() - started < 300:
        persisted = audit.count_orders(lab, sale["id"])
        if persisted and first is None:
            first, first_count = time.monotonic(), persisted
        if persisted >= count:
            break
        time.sleep(0.05)
    finished = time.monotonic()
    # The rate once persisting: from the first poll that saw orders (not counting those).
    persisting = finished - (first or started)
    results.update(orders=count, persisted=persisted, seconds_from_start=finished - started,
                   seconds_from_first=persisting,
                   rate_from_start=persisted / (finished - started),
                   rate_from_first=(persisted - first_count) / persisting if persisting > 0.2
                   else persisted / (finished - started))
    progress.step("audit of the drained sale")
    checked = audit.audit_burst(lab, "drain", sale, order_ids, [], {"202": count})
    results["audit"] = checked.to_dict()


def fill_outbox(lab, sale_id: int, count: int, buyers: int) -> list[str]:
    client = redis.Redis(unix_socket_path=str(lab.stack.paths.redis_socket))
    script = client.register_script((LUA_DIR / "reserve.lua").read_bytes())
    now_ms = int(time.time() * 1000)
    order_ids = []
    for start in range(0, count, 1000):
        pipe = client.pipeline(transaction=False)
        for n in range(start, min(count, start + 1000)):
            order_id = str(uuid.uuid4())
            keys, args = reserve_call(sale_id, str(n % buyers + 1), 1, f"drain-{n}", now_ms,
                                      order_id)
            script(keys=keys, args=args, client=pipe)
            order_ids.append(order_id)
        refused = [reply for reply in pipe.execute() if reply[0] != b"reserved"]
        if refused:
            raise RuntimeError(f"reserve.lua refused while filling the outbox: {refused[:3]}")
    return order_ids


# ---------------------------------------------------------------------- sse-fanout

def sse_fanout(lab, profile: Profile, progress, results: dict) -> None:
    """bench/sse_fanout.py (its own stack), when it exists; our servers are stopped first."""
    if not SSE_SCRIPT.exists():
        results["available"] = False
        progress.step("bench/sse_fanout.py does not exist: not available")
        return
    lab.stop_all()
    output = lab.work / "sse.json"
    argv = [PYTHON, str(SSE_SCRIPT), "--json", str(output)]
    if profile.name == "quick":
        argv.append("--quick")
    progress.step(f"running {' '.join(argv[1:])}")
    with open(lab.logs / "sse-fanout.log", "wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                   start_new_session=True)
        try:
            process.wait(timeout=240 if profile.name == "quick" else 900)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
    results["available"] = True
    results["exit_status"] = process.returncode
    if process.returncode == 0 and output.exists():
        results.update(json.loads(output.read_text()))
    else:
        results["error"] = Path(lab.logs / "sse-fanout.log").read_text(errors="replace")[-800:]


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
        "purchase-burst": 5 + profile.buyers / 50 + per_run * 5 * conns + 3 * 2 * conns
                          + 2 * (per_run + 2),
        "slow-isolation": 3 * (profile.slow.slow_hold_seconds + 2),
        "drain": 10 + profile.drain_orders / 5000,
        "sse-fanout": 90 if profile.name == "quick" else 300,
    }[name]
