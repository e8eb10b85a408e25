"""What redis's appendfsync policy costs in write throughput: always, everysec and no, side
by side in one run, each on its own redis-server with AOF on (as deploy/templates/redis.conf,
but for the policy), its data on this machine's disk (not tmpfs, where fsync is free).

Writes: SET, and XADD to a stream (what each reservation appends to the outbox), with 50
clients (a loaded app) and with 1 client (each write waits for its own fsync). Rounds
interleave the three policies so machine noise hits them alike; the median is reported.

Run from the repository root: ``.venv/bin/python bench/appendfsync.py [--quick]``.
"""

import argparse
import csv
import datetime
import io
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.servers import aof_redis  # noqa: E402
from tests.servers import binary  # noqa: E402

RESULTS_FILE = REPO_ROOT / "bench" / "results" / "appendfsync.md"
POLICIES = ("always", "everysec", "no")
WORKLOADS = {
    "SET": ["-t", "set"],
    "XADD": ["XADD", "spillway:bench-outbox", "*", "order", "__rand_int__"],
}


def benchmark(port: int, workload: list[str], clients: int, requests: int) -> float:
    """Requests per second redis-benchmark measured."""
    argv = [
        binary("redis-benchmark"),
        "-p",
        str(port),
        "-c",
        str(clients),
        "-n",
        str(requests),
        "-r",
        "1000000",
        "--csv",
        *workload,
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=True).stdout
    rows = list(csv.reader(io.StringIO(out)))
    return float(rows[-1][1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds, requests = (1, 5000) if args.quick else (3, 20000)
    work = Path(tempfile.mkdtemp(prefix="appendfsync-", dir=REPO_ROOT / "bench"))
    servers = {policy: aof_redis(work, work / policy, policy).start() for policy in POLICIES}
    results: dict[tuple, list[float]] = {}
    try:
        for _ in range(rounds):
            for name, workload in WORKLOADS.items():
                for clients in (50, 1):
                    for policy, server in servers.items():
                        count = requests if clients > 1 else requests // 10
                        rate = benchmark(server.port, workload, clients, count)
                        results.setdefault((name, clients, policy), []).append(rate)
    finally:
        for server in servers.values():
            server.stop()
        subprocess.run(["rm", "-rf", str(work)], check=False)
    report = render(results, rounds, requests)
    RESULTS_FILE.write_text(report)
    print(report)
    return 0


def redis_version() -> str:
    answer = subprocess.run([binary("redis-server"), "--version"], capture_output=True, text=True)
    return answer.stdout.split()[2].removeprefix("v=")


def render(results: dict, rounds: int, requests: int) -> str:
    lines = [
        "# appendfsync: write throughput of each policy",
        "",
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"`.venv/bin/python bench/appendfsync.py`, {rounds} interleaved round(s), median; "
        f"{requests} requests with 50 clients, a tenth of that with 1; redis "
        f"{redis_version()}, "
        "AOF on the machine's disk. A shared, loaded 2-core machine: read the ratios.",
        "",
        "| writes | clients | always (req/s) | everysec (req/s) | no (req/s) | always ÷ everysec |",
        "|---|---|---|---|---|---|",
    ]
    for name in WORKLOADS:
        for clients in (50, 1):
            rates = {p: statistics.median(results[(name, clients, p)]) for p in POLICIES}
            lines.append(
                f"| {name} | {clients} | {rates['always']:,.0f} | "
                f"{rates['everysec']:,.0f} | {rates['no']:,.0f} | "
                f"{rates['always'] / rates['everysec']:.2f} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
