"""Pooled nginx → gunicorn connections and their tail (issue #17, item 1): the stack as
shipped (a fresh upstream connection per request), ``keepalive 64`` on its one shared
gunicorn socket, and the stack's gunicorn run once per web worker with one worker each on a
socket of its own behind ``least_conn`` + ``keepalive 64`` (harness/lab.py,
``pooled_url``), side by side in interleaved rounds.

Why this bench: pooling saves a fifth of the CPU per request, but on one shared socket it
grew p99 to 0.5–1.3 s at saturation (FINDINGS.md, section 2). The suspicion: workers sharing
one listening socket win new connections unevenly, a pooled connection stays where it
landed, and nginx reuses the most recently freed one first; with one socket per process
nginx chooses the process itself. Each run reports req/s, p50, p99 and the CPU per answered
request of the gunicorn processes and of the nginx in front (from /proc, harness/cpu.py).

Run from the repository root: ``.venv/bin/python bench/pool_tail.py [--rounds 2]
[--seconds 5] [--connections 256,64] [--path /api/v1/products/1?via=app]
[--pool 'per:least_conn; keepalive 64;' ...] [--syscalls]``.
"""

import argparse
import os
import re
import signal
import subprocess
import threading
import time
from contextlib import suppress
from pathlib import Path

from harness import cpu
from harness import wrk
from harness.lab import check_get
from harness.lab import session
from harness.report import table
from harness.report import when_and_where

WARM_UP_SECONDS = 1
DEFAULT_POOLS = ("one:keepalive 64;", "per:least_conn; keepalive 64;")


def targets(lab, path: str, pools: list[str]) -> list[tuple[str, str, list[str]]]:
    """(name, url, the names of its gunicorn processes for lab.pid_of)."""
    per_socket = [f"gunicorn-socket-{n}" for n in range(len(lab.per_socket_gunicorns()))]
    compared = [("shipped: no upstream keep-alive", lab.url + path, ["gunicorn"])]
    for pool in pools:
        where, _, lines = pool.partition(":")
        if where not in ("one", "per"):
            raise SystemExit(f"--pool {pool!r}: say one:LINES or per:LINES")
        compared.append(
            (
                f"{'per-socket' if where == 'per' else 'one socket'}, {lines.strip()}",
                lab.pooled_url(lines.strip(), per_socket=where == "per") + path,
                per_socket if where == "per" else ["gunicorn"],
            )
        )
    return compared


def syscalls(masters: list[int | None], seconds: float) -> dict[str, tuple[int, int]]:
    """The syscalls the workers of ``masters`` make in ``seconds``: {name: (calls, errors)},
    from ``strace -c`` (which slows them: compare the mix, not the rate)."""
    workers = [pid for master in masters if master for pid in cpu.tree(master)[1:]]
    tracer = subprocess.Popen(
        ["strace", "-f", "-c", *(f"-p{pid}" for pid in workers)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(seconds)
    tracer.send_signal(signal.SIGINT)
    summary = tracer.communicate(timeout=30)[1]
    line = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(\d*)\s*(\w+)$", re.M)
    return {name: (int(calls), int(errors or 0)) for calls, errors, name in line.findall(summary)}


def per_response(counted: dict[str, tuple[int, int]]) -> str:
    """The mix, per response written (gunicorn sends each with one ``sendto``): fresh
    connections (accept4 that did not fail), hub waits (epoll_wait), reads that found
    nothing (recvfrom errors), and the five most frequent calls."""
    responses = counted.get("sendto", (0, 0))[0] or 1
    accepted = counted.get("accept4", (0, 0))
    top = sorted(counted.items(), key=lambda item: -item[1][0])[:5]
    return (
        f"accepts {(accepted[0] - accepted[1]) / responses:.3f}, "
        f"epoll_wait {counted.get('epoll_wait', (0, 0))[0] / responses:.3f}, "
        f"empty reads {counted.get('recvfrom', (0, 0))[1] / responses:.3f}; top: "
        + ", ".join(f"{name} {calls / responses:.2f}" for name, (calls, _) in top)
    )


def measure(
    lab, url: str, connections: int, seconds: int, gunicorns: list[str], trace: bool = False
) -> dict:
    """A warm-up, then a measured wrk run with the CPU of the gunicorns and of the nginx;
    with ``trace``, the run counts the workers' syscalls instead (strace slows them: its
    latencies and CPU are not comparable)."""
    wrk.run(url, connections, WARM_UP_SECONDS)
    if trace:
        masters = [lab.pid_of(name) for name in gunicorns]
        counted: list[dict] = []
        window = seconds / 2
        tracer = threading.Timer(seconds / 4, lambda: counted.append(syscalls(masters, window)))
        tracer.start()
        wrk.run(url, connections, seconds)
        tracer.join()
        return {"syscalls": per_response(counted[0])}
    app_meters = [cpu.Meter(lab.pid_of(name)).start() for name in gunicorns]
    sleeps_before = sleeps(app_meters)
    nginx_meter = cpu.Meter(lab.nginx_pid(url)).start()
    masters = [lab.pid_of(name) for name in gunicorns]
    spread: list[int] = []
    sampler = threading.Timer(seconds / 2, lambda: spread.extend(sockets_per_worker(masters)))
    sampler.start()
    result = wrk.run(url, connections, seconds)
    sampler.join()
    slept = sleeps(app_meters) - sleeps_before
    app_seconds = sum(meter.stop() or 0.0 for meter in app_meters)
    nginx_seconds = nginx_meter.stop() or 0.0
    per_request = 1e6 / result.requests if result.requests else 0.0
    return {
        "rps": result.rps,
        "p50": result.p50_ms,
        "p99": result.p99_ms,
        "app_us": app_seconds * per_request,
        "nginx_us": nginx_seconds * per_request,
        "errors": result.errors,
        "sleeps": slept * per_request / 1e6,
        "spread": "/".join(map(str, sorted(spread, reverse=True))),
        "why": f"non-2xx {result.non_2xx}, timeouts {result.timeouts}, "
        f"socket errors {result.socket_errors}",
    }


def sleeps(meters: list) -> int:
    """Times the processes of ``meters`` have blocked so far (voluntary context switches):
    for a gevent worker, how often its hub found nothing to run and waited in epoll."""
    total = 0
    for pid in (pid for meter in meters for pid in meter.pids):
        with suppress(OSError):
            status = Path(f"/proc/{pid}/status").read_text()
            total += int(re.search(r"^voluntary_ctxt_switches:\s+(\d+)", status, re.M).group(1))
    return total


def sockets_per_worker(masters: list[int | None]) -> list[int]:
    """Open sockets of each gunicorn worker (the children of ``masters``): its clients'
    connections, and a few of its own (the listener, redis, memcached)."""
    counts = []
    for master in masters:
        for worker in cpu.tree(master)[1:] if master else []:
            with suppress(OSError):
                fds = Path(f"/proc/{worker}/fd")
                counts.append(sum(os.readlink(fd).startswith("socket:") for fd in fds.iterdir()))
    return counts


def row(round_: int, connections: int, name: str, figures: dict) -> list[str]:
    p50, p99 = figures["p50"] or 0.0, figures["p99"] or 0.0
    return [
        str(round_),
        str(connections),
        name,
        f"{figures['rps']:,.0f}",
        f"{p50:.1f}",
        f"{p99:.1f}",
        f"{p99 / p50:.1f}" if p50 else "–",
        f"{figures['app_us']:.0f}",
        f"{figures['nginx_us']:.0f}",
        f"{figures['sleeps']:.2f}",
        figures["spread"],
        str(figures["errors"]),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", default="256,64")
    parser.add_argument("--path", default="/api/v1/products/1?via=app")
    parser.add_argument(
        "--pool",
        action="append",
        help="one:LINES (the stack's one gunicorn socket) or per:LINES (a socket per "
        "process), LINES the upstream block's balancing and keep-alive lines (repeatable); "
        f"default {' and '.join(map(repr, DEFAULT_POOLS))}",
    )
    parser.add_argument(
        "--syscalls",
        action="store_true",
        help="the workers' syscalls per response (strace: fresh connections, hub waits) "
        "instead of measuring",
    )
    args = parser.parse_args()
    concurrencies = [int(c) for c in args.connections.split(",")]
    load_before = os.getloadavg()[0]
    rows = []
    with session("pool-tail") as lab:
        compared = targets(lab, args.path, args.pool or list(DEFAULT_POOLS))
        for _name, url, _gunicorns in compared:
            check_get(url)
        if args.syscalls:
            for connections in concurrencies:
                for name, url, gunicorns in compared:
                    figures = measure(lab, url, connections, args.seconds, gunicorns, trace=True)
                    print(f"{connections} | {name} | {figures['syscalls']}", flush=True)
            return 0
        for round_ in range(1, args.rounds + 1):
            for index, connections in enumerate(concurrencies):
                # The order alternates, so that no target always runs first.
                flip = (round_ + index) % 2
                for name, url, gunicorns in compared[::-1] if flip else compared:
                    figures = measure(lab, url, connections, args.seconds, gunicorns)
                    rows.append(row(round_, connections, name, figures))
                    print(" | ".join(rows[-1]), figures["why"], flush=True)
                    time.sleep(1)
    print()
    print(when_and_where(load_before) + f", {args.seconds} s runs, path {args.path}")
    print()
    header = ["round", "conns", "nginx → gunicorn", "req/s", "p50 ms", "p99 ms", "p99/p50"]
    header += ["gunicorn µs/req", "nginx µs/req", "gunicorn waits/req", "sockets per worker"]
    header.append("errors")
    print(table(header, rows))
    return 1 if any(r[-1] != "0" for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
