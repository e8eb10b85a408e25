"""Flash-sale benchmark: admission throughput, its round trips, and the persistence drain.

One run, side by side, against the real stack (``spillway up``):

1. purchase admission through nginx (wrk with a Lua script: rotating buyers, a fresh
   Idempotency-Key per request) beside a bare Flask view on the same stack, and beside the
   naive purchase — one database transaction with a lock per purchase
   (bench/naive_purchase_app.py on gunicorn gevent ×2, no nginx in front of it);
2. redis commands per purchase, from redis's own command statistics, workers stopped;
3. the drain: 100,000 reservations waiting in the outbox, then the Celery worker started:
   how long until all of them are orders in SQLite.

Goals (issue 4): admission ≥ 0.6 × the bare view; ≥ 10 × the naive purchase;
drain ≥ 5,000 orders/s, a 100,000 burst persisted in under 30 s.

Run from the repository root: ``.venv/bin/python bench/sale.py [--quick]``.
"""

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis
import requests
from foundation import PYTHON  # also puts the repository on sys.path
from foundation import REPO_ROOT
from foundation import Stack
from foundation import git_revision
from foundation import ms
from foundation import parse_wrk
from foundation import ratio
from foundation import table

from tests.servers import Server
from tests.servers import binary
from tests.servers import free_port

RESULTS_FILE = REPO_ROOT / "bench" / "results" / "sale.md"
WRK_SCRIPT = """
local tokens = {%(tokens)s}
local counter, threads = 0, 0
function setup(thread) threads = threads + 1; thread:set("tid", threads) end
function init(args) prefix = (args[1] or "r") .. "-" .. tid .. "-" end
function request()
  counter = counter + 1
  local headers = {["Authorization"] = "Bearer " .. tokens[counter %% #tokens + 1],
                   ["Content-Type"] = "application/json",
                   ["Idempotency-Key"] = prefix .. counter,
                   ["X-User"] = tostring(counter %% #tokens)}
  return wrk.format("%(method)s", wrk.path, headers, %(body)s)
end
"""


def wrk(url: str, connections: int, seconds: int, script: Path | None = None,
        run_tag: str = "") -> object:
    argv = [binary("wrk"), "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        argv += ["-s", str(script)]
    argv.append(url)
    if run_tag:
        argv += ["--", run_tag]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    return parse_wrk(done.stdout)


def api(stack_url: str, admin: dict):
    session = requests.Session()

    def call(method, path, **kwargs):
        response = session.request(method, stack_url + path, timeout=30, **kwargs)
        response.raise_for_status()
        return response.json()

    return call, admin


def create_sale(call, admin, stock: int, per_user_limit: int) -> str:
    product = call("GET", "/api/v1/products")["items"][0]["id"]
    ends = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=2))
    return call("POST", "/api/v1/sales", headers=admin, json={
        "product_id": product, "stock": stock, "per_user_limit": per_user_limit,
        "payment_timeout_s": 86_400, "ends_at": ends.isoformat()})["id"]


def signup_many(call, count: int) -> list[str]:
    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(lambda n: call("POST", "/api/v1/users",
                                            json={"name": f"bench{n}"})["token"],
                             range(count)))


def round_trips_per_purchase(base: str, sale_id: str, tokens: list[str], socket_path: Path,
                             count: int = 300) -> float:
    """Commands the web tier sends redis per purchase, from MONITOR (workers stopped, so
    theirs don't count; commands a Lua script runs inside redis are not round trips)."""
    sent = []
    stop = threading.Event()

    def watch():
        client = redis.Redis(unix_socket_path=str(socket_path))
        with client.monitor() as monitor:
            ready.set()
            for command in monitor.listen():
                if command.get("client_type") != "lua" and command.get("client_address") != "lua":
                    sent.append(command["command"])
                if stop.is_set():
                    return

    ready = threading.Event()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    ready.wait(10)
    session = requests.Session()
    for n in range(count):
        session.post(f"{base}/api/v1/sales/{sale_id}/orders", json={"quantity": 1},
                     headers={"Authorization": f"Bearer {tokens[n % len(tokens)]}",
                              "Idempotency-Key": f"rt-{n}"}, timeout=10).raise_for_status()
    stop.set()
    session.get(f"{base}/readyz", timeout=10)  # one more command, to wake the watcher
    watcher.join(10)
    purchases = [c for c in sent if c.startswith("EVALSHA")]
    assert len(purchases) >= count, (len(purchases), sent[:5])
    others = [c for c in sent if not c.startswith("EVALSHA")]
    return len(purchases) / count, len(others), [c.split(" ")[0] for c in others[:5]]


def fill_outbox(stack: Stack, sale_id: str, count: int) -> None:
    """``count`` reservations through reserve.lua itself, as the web tier makes them."""
    secrets = dict(line.split("=", 1) for line in
                   (stack.paths.secrets_file).read_text().split())
    os.environ.update(secrets, SPILLWAY_REDIS_URL=f"unix://{stack.paths.redis_socket}?db=0",
                      SPILLWAY_BROKER_URL=f"redis+socket://{stack.paths.redis_socket}"
                      "?virtual_host=1", DATABASE_URL=f"sqlite:///{stack.paths.database}",
                      SPILLWAY_MEMCACHED_SERVERS=f"{stack.paths.memcached_socket}",
                      SPILLWAY_LOG_LEVEL="WARNING")
    from flashsale.app import create_app
    from flashsale.sales import stock

    app = create_app("prd")
    now = int(time.time() * 1000)
    with app.app_context():
        for n in range(count):
            outcome = stock.reserve(int(sale_id), str(n % 1000 + 1), 1, "", now, str(uuid.uuid4()))
            assert outcome.outcome == "reserved", outcome


def drain(stack: Stack, call, admin, count: int) -> tuple[float, float]:
    """Stop the workers, queue ``count`` reservations, start a worker: seconds to persist all."""
    stack_ctl = stack_supervisorctl(stack)
    stack_ctl("stop", "celery-beat", "celery-worker")
    sale_id = create_sale(call, admin, stock=count, per_user_limit=100)
    fill_outbox(stack, sale_id, count)
    started = time.monotonic()
    stack_ctl("start", "celery-worker", "celery-beat")
    first = None
    while time.monotonic() - started < 300:
        persisted = call("GET", f"/api/v1/sales/{sale_id}/stats", headers=admin)["orders_persisted"]
        if persisted and first is None:
            first = time.monotonic()
        if persisted >= count:
            break
        time.sleep(0.25)
    finished = time.monotonic()
    return finished - started, finished - (first or started)


def wait_drained(client: redis.Redis, timeout: float = 120) -> None:
    """Let the workers empty the outbox, so that no run pays for the one before it."""
    deadline = time.monotonic() + timeout
    while client.xlen("spillway:outbox") and time.monotonic() < deadline:
        time.sleep(0.25)
    time.sleep(1)


def stack_supervisorctl(stack: Stack):
    def ctl(*args):
        subprocess.run([PYTHON, "-m", "supervisor.supervisorctl", "-c",
                        str(stack.paths.supervisord_conf), *args],
                       capture_output=True, timeout=120, check=False)
    return ctl


NAIVE_NGINX = """
daemon off;
worker_processes auto;
pid %(work)s/naive-nginx.pid;
error_log %(work)s/naive-nginx-error.log warn;
events { worker_connections 16384; }
http {
    access_log %(work)s/naive-nginx-access.log combined buffer=64k flush=1s;
    client_body_temp_path %(work)s/naive-nginx-body;
    proxy_temp_path %(work)s/naive-nginx-proxy;
    fastcgi_temp_path %(work)s/naive-nginx-fastcgi;
    uwsgi_temp_path %(work)s/naive-nginx-uwsgi;
    scgi_temp_path %(work)s/naive-nginx-scgi;
    upstream naive { server 127.0.0.1:%(upstream)d; }
    server {
        listen 127.0.0.1:%(port)d backlog=4096;
        location / {
            proxy_pass http://naive;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
"""


def naive_behind_nginx(work: Path, upstream: int) -> Server:
    """An nginx like the stack's (no upstream keep-alive, access log on) before the naive
    server, so that the two purchases are compared through the same kind of proxy."""
    port = free_port()
    config = work / "naive-nginx.conf"
    config.write_text(NAIVE_NGINX % {"work": work, "upstream": upstream, "port": port})
    return Server("naive-nginx", [binary("nginx"), "-c", str(config), "-e",
                                  str(work / "naive-nginx-error.log")], port, work).start()


def naive_server(work: Path) -> Server:
    port = free_port()
    return Server("naive-purchase", [
        PYTHON, "-m", "gunicorn", f"naive_purchase_app:make_app('{work / 'naive.db'}')",
        "-k", "gevent", "-w", "2", "--worker-connections", "4096", "--backlog", "4096",
        "-b", f"127.0.0.1:{port}", "--no-control-socket", "--chdir", str(REPO_ROOT / "bench")],
        port, work).start()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 s runs, one round, 20k drain")
    quick = parser.parse_args().quick
    seconds, rounds, drain_count = (5, 1, 20_000) if quick else (10, 2, 100_000)
    started = datetime.datetime.now(datetime.timezone.utc)
    work = Path(tempfile.mkdtemp(prefix="spillway-bench-sale-"))
    work.chmod(0o755)
    port = free_port()
    stack = Stack(work / "run", port, work / "up.log", extra_args=("--seed-demo",))
    (work / "run").mkdir()
    (work / "run").chmod(0o755)
    naive = naive_proxy = None
    rows = []
    try:
        print(f"[1] starting the stack on 127.0.0.1:{port} and the naive purchase server",
              flush=True)
        stack.start()
        naive = naive_server(work)
        naive_proxy = naive_behind_nginx(work, naive.port)
        base = f"http://127.0.0.1:{port}"
        secrets = dict(line.split("=", 1) for line in
                       (stack.paths.secrets_file).read_text().split())
        call, admin = api(base, {"Authorization": f"Bearer {secrets['SPILLWAY_ADMIN_TOKEN']}"})
        sale_id = create_sale(call, admin, stock=10_000_000, per_user_limit=100)
        print("[2] signing up 4,000 buyers", flush=True)
        tokens = signup_many(call, 4000)
        quoted = ",".join(f'"{t}"' for t in tokens)
        script = work / "purchase.lua"
        script.write_text(WRK_SCRIPT % {"tokens": quoted, "method": "POST",
                                        "body": "'{\"quantity\": 1}'"})
        # The bare view gets the same generated headers, so wrk's own Lua work (on the
        # same cores as the server) weighs on both sides alike.
        bare_script = work / "bare.lua"
        bare_script.write_text(WRK_SCRIPT % {"tokens": quoted, "method": "GET", "body": "nil"})
        purchase_url = f"{base}/api/v1/sales/{sale_id}/orders"
        targets = {
            "purchase (spillway, nginx)": (purchase_url, script),
            "purchase, workers paused": (purchase_url, script),
            "bare view (spillway, nginx)": (f"{base}/demo/index", bare_script),
            "naive purchase (row lock)": (f"http://127.0.0.1:{naive.port}/purchase", script),
            "naive purchase, via nginx": (f"http://127.0.0.1:{naive_proxy.port}/purchase",
                                          script),
        }
        outbox = redis.Redis(unix_socket_path=str(stack.paths.redis_socket))
        run = 0
        for round_number in range(1, rounds + 1):
            for connections in (64, 256):
                order = list(targets) if round_number % 2 else list(reversed(targets))
                for name in order:
                    run += 1
                    print(f"[3] round {round_number}, -c{connections}: {name}", flush=True)
                    url, lua = targets[name]
                    paused = name == "purchase, workers paused"
                    if paused:  # the web tier alone, without the drain competing for cores
                        stack_supervisorctl(stack)("stop", "celery-beat", "celery-worker")
                    result = wrk(url, connections, seconds, lua, run_tag=f"run{run}")
                    rows.append((round_number, connections, name, result))
                    if paused:
                        stack_supervisorctl(stack)("start", "celery-worker", "celery-beat")
                    wait_drained(outbox)
        print("[4] redis commands per purchase (workers stopped)", flush=True)
        stack_supervisorctl(stack)("stop", "celery-beat", "celery-worker")
        per_purchase = round_trips_per_purchase(base, sale_id, tokens,
                                                stack.paths.redis_socket)
        stack_supervisorctl(stack)("start", "celery-worker", "celery-beat")
        print(f"[5] drain: {drain_count:,} reservations queued, then a worker", flush=True)
        total, persisting = drain(stack, call, admin, drain_count)
    finally:
        for server in (naive_proxy, naive):
            if server:
                server.stop()
        stack.stop()
    report = render(rows, per_purchase, drain_count, total, persisting, seconds, started)
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_FILE.write_text(report)
    print(report)
    return 0


def render(rows, per_purchase, drain_count, total, persisting, seconds, started) -> str:
    def best(name, connections):
        return max((r for _, c, n, r in rows if n == name and c == connections),
                   key=lambda r: r.rps)

    ratios = []
    for connections in (64, 256):
        for name in ("purchase (spillway, nginx)", "purchase, workers paused"):
            purchase = best(name, connections)
            ratios.append([str(connections), name,
                           ratio(purchase.rps, best("bare view (spillway, nginx)",
                                                    connections).rps), "≥ 0.6",
                           ratio(purchase.rps, best("naive purchase, via nginx",
                                                    connections).rps),
                           ratio(purchase.rps, best("naive purchase (row lock)",
                                                    connections).rps), "≥ 10",
                           ms(purchase.p99_ms)])
    every = [[str(r), str(c), n, f"{w.rps:,.0f}", ms(w.p50_ms), ms(w.p99_ms), str(w.timeouts),
              str(w.non_2xx)] for r, c, n, w in rows]
    return "\n".join([
        "# Flash-sale benchmark",
        "",
        f"- run: {started:%Y-%m-%d %H:%M} UTC, commit {git_revision()}, {os.cpu_count()} cores;"
        f" wrk -t2 -d{seconds}s --latency, sharing the cores with everything else",
        "- purchase: POST /api/v1/sales/{id}/orders through nginx, 4,000 rotating buyers, a new"
        " Idempotency-Key each; Celery drains the outbox meanwhile, as in production",
        "- naive: bench/naive_purchase_app.py, a locked transaction per purchase on SQLite,"
        " gunicorn gevent ×2, measured directly and behind an nginx configured like the"
        " stack's",
        "",
        "## Admission",
        "",
        table(["conns", "purchase", "÷ bare view", "goal", "÷ naive via nginx",
               "÷ naive direct", "goal", "purchase p99 ms"], ratios),
        "",
        f"Redis round trips per purchase (web tier, from MONITOR over {300} purchases):"
        f" **{per_purchase[0]:.2f}** EVALSHA each; other commands in that time:"
        f" {per_purchase[1]} ({'; '.join(per_purchase[2]) or 'none'})",
        "",
        "## Drain",
        "",
        f"{drain_count:,} reservations in the outbox, then the worker started: all persisted"
        f" in **{total:.1f} s** from the worker's start ({drain_count / total:,.0f} orders/s),"
        f" {persisting:.1f} s from the first order persisted"
        f" ({drain_count / max(persisting, 0.001):,.0f} orders/s).",
        "",
        "## Every run",
        "",
        table(["round", "conns", "target", "req/s", "p50 ms", "p99 ms", "timeouts",
               "non-2xx"], every),
        "",
    ])


if __name__ == "__main__":
    sys.exit(main())
