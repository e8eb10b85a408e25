"""Catalog benchmark: the three ways a hot product GET is served, beside two ceilings.

All through the stack's nginx (``spillway up --seed-demo``), wrk, side by side, interleaved:

  (a) fast path   GET /api/v1/products/1            nginx answers from memcached, no Python
  (b) flask hit   GET /api/v1/products/1?via=app    misses nginx's key, the app hits memcached
  (c) flask db    (b) with the admin's ``Cache-Control: no-cache``: the app reads SQLite
  (d) static      GET /static/site.css              nginx serves a file from disk
  (e) hello       GET /demo/index                   a bare view on the same gunicorn

Goals (issue 3): (a) ≥ 0.6 × (d); (b) ≥ 0.8 × (e); (c) reported.

Run from the repository root: ``.venv/bin/python bench/catalog.py [--quick]`` (or
``make bench``). The report goes to stdout and bench/results/catalog.md.
"""

import argparse
import datetime
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from foundation import REPO_ROOT  # also puts the repository on sys.path, for tests.servers
from foundation import Stack
from foundation import WrkResult
from foundation import git_revision
from foundation import ms
from foundation import ratio
from foundation import run_wrk
from foundation import table

from spillway.deploy.run_dir import RunDir
from tests.servers import free_port

RESULTS_FILE = REPO_ROOT / "bench" / "results" / "catalog.md"
PATHS = {
    "a fast path": "/api/v1/products/1",
    "b flask hit": "/api/v1/products/1?via=app",
    "c flask db": "/api/v1/products/1?via=db",
    "d static": "/static/site.css",
    "e hello": "/demo/index",
}
GOALS = [("a fast path", "d static", 0.6), ("b flask hit", "e hello", 0.8)]


@dataclass(frozen=True)
class Profile:
    seconds: int
    rounds: int
    connections: tuple[int, ...]


FULL = Profile(seconds=10, rounds=2, connections=(64, 256))
QUICK = Profile(seconds=5, rounds=1, connections=(64, 256))


def warm_and_check(base_url: str, admin: dict) -> None:
    """Each path answers 200, and (a) really is nginx's while (b) and (c) are the app's."""
    for _ in range(3):
        for name, path in PATHS.items():
            response = requests.get(base_url + path, headers=admin if name == "c flask db"
                                    else {}, timeout=5)
            response.raise_for_status()
    served = requests.get(base_url + PATHS["a fast path"], timeout=5).headers
    assert served.get("X-Served-By") == "nginx-memcached", served
    for name in ("b flask hit", "c flask db"):
        assert "X-Served-By" not in requests.get(base_url + PATHS[name], timeout=5).headers


def admin_headers(run_dir: Path) -> dict:
    secrets = dict(line.split("=", 1) for line in RunDir(run_dir).secrets_file.read_text().split())
    return {"Authorization": f"Bearer {secrets['SPILLWAY_ADMIN_TOKEN']}"}


def measure_all(base_url: str, admin: dict, profile: Profile) -> list[tuple]:
    rows = []
    names = list(PATHS)
    total = profile.rounds * len(profile.connections) * len(names)
    step = 0
    for round_number in range(1, profile.rounds + 1):
        order = names if round_number % 2 else list(reversed(names))
        for connections in profile.connections:
            for name in order:
                step += 1
                print(f"[{step}/{total}] round {round_number}, -c{connections}: {name}",
                      flush=True)
                headers = {**admin, "Cache-Control": "no-cache"} if name == "c flask db" else {}
                result = run_wrk(base_url + PATHS[name], connections, profile.seconds, headers)
                rows.append((round_number, connections, name, result))
                time.sleep(1.0)
    return rows


def best(rows: list[tuple], name: str, connections: int) -> WrkResult:
    """The run with the higher throughput of the repeated ones (the less disturbed)."""
    return max((r for _, c, n, r in rows if n == name and c == connections),
               key=lambda r: r.rps)


def render(rows: list[tuple], profile: Profile, started: datetime.datetime) -> str:
    header = ["round", "conns", "path", "req/s", "p50 ms", "p99 ms", "timeouts", "non-2xx"]
    body = [[str(r), str(c), n, f"{w.rps:,.0f}", ms(w.p50_ms), ms(w.p99_ms),
             str(w.timeouts), str(w.non_2xx)] for r, c, n, w in rows]
    goals = []
    for connections in profile.connections:
        for numerator, denominator, goal in GOALS:
            value = ratio(best(rows, numerator, connections).rps,
                          best(rows, denominator, connections).rps)
            verdict = "met" if value != "–" and float(value) >= goal else "NOT met"
            goals.append([str(connections), f"{numerator} ÷ {denominator}", value,
                          f"≥ {goal}", verdict])
        goals.append([str(connections), "c flask db ÷ e hello",
                      ratio(best(rows, "c flask db", connections).rps,
                            best(rows, "e hello", connections).rps), "reported", ""])
    return "\n".join([
        f"# Catalog benchmark ({'quick' if profile is QUICK else 'full'})",
        "",
        f"- run: {started:%Y-%m-%d %H:%M} UTC, commit {git_revision()}, {os.cpu_count()} cores,"
        f" load average {os.getloadavg()[0]:.2f} at the end",
        "- stack: `spillway up --seed-demo --web-workers 2`; all requests through its nginx;"
        f" `wrk -t2 -cN -d{profile.seconds}s --latency`, wrk sharing the 2 cores",
        "- (a) nginx `memcached_pass`; (b) Flask, memcached hit; (c) Flask, SQLite read;"
        " (d) nginx static file; (e) bare Flask view on the same gunicorn",
        "",
        "## Ratios (best run of each, per concurrency)",
        "",
        table(["conns", "ratio", "value", "goal", ""], goals),
        "",
        "## Every run",
        "",
        table(header, body),
        "",
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 s runs, one round")
    profile = QUICK if parser.parse_args().quick else FULL
    started = datetime.datetime.now(datetime.timezone.utc)
    run_dir = Path(tempfile.mkdtemp(prefix="spillway-bench-catalog-"))
    run_dir.chmod(0o755)
    port = free_port()
    stack = Stack(run_dir, port, run_dir.with_suffix(".log"), extra_args=("--seed-demo",))
    print(f"starting the stack on 127.0.0.1:{port} ({run_dir})", flush=True)
    try:
        stack.start()
        base_url = f"http://127.0.0.1:{port}"
        admin = admin_headers(run_dir)
        warm_and_check(base_url, admin)
        rows = measure_all(base_url, admin, profile)
    finally:
        stack.stop()
    report = render(rows, profile, started)
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_FILE.write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
