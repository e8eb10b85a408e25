"""Live-stock fan-out: N server-sent-event streams held by ONE gevent worker.

On a stack of its own (``spillway up --web-workers 1``, worker connections to spare), it
opens N streams of one sale through nginx and measures:

- the worker's resident memory (VmRSS from /proc/<pid>/status) before, warmed up with
  ordinary requests and one stream, and with the N streams open;
- the event latency: from the moment a purchase is sent to the moment each stream has
  read the event with the new remaining stock (p50 and p99 over every stream and every
  purchase). It includes the poller's tick (SPILLWAY_STREAM_POLL_MS, 200 ms by default,
  so about 100 ms on average), the fan-out to N greenlets, nginx, and this client's own
  reading, which shares the machine's two cores with the server.

The client is one selectors loop over non-blocking sockets (HTTP/1.0, so nginx sends the
stream unchunked): cheap enough to hold N connections beside the stack.

Goal (issue 7): 10,000 streams on one worker in under 300 MB of RSS.
"""

import json
import os
import resource
import selectors
import socket
import statistics
import threading
import time
import uuid
from pathlib import Path

import requests

from harness.lab import HOST
from harness.lab import Lab
from tests.waiting import wait_until

OPEN_BATCH = 500
OPEN_TIMEOUT_S = 120
EVENT_TIMEOUT_S = 60


def stack_args(streams: int) -> tuple[str, ...]:
    return ("--web-workers", "1", "--worker-connections", str(streams + 1000), "--seed-demo")


class StreamClient:
    """Many open event streams, read by one selectors loop."""

    def __init__(self, port: int, path: str):
        self.port = port
        self.request = (
            f"GET {path} HTTP/1.0\r\nHost: {HOST}:{port}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
        self.selector = selectors.DefaultSelector()
        self.sockets: list[socket.socket] = []
        self.buffers: list[bytes] = []
        self.in_body: list[bool] = []
        self.remaining: list[int | None] = []  # the last value each stream read
        self.seen_at: list[float] = []  # when it read that value (monotonic)
        self.events = 0

    def open(self, count: int) -> None:
        """Open ``count`` more streams and wait for each one's first event."""
        start = len(self.sockets)
        for _ in range(count):
            sock = socket.create_connection((HOST, self.port), timeout=30)
            sock.sendall(self.request)
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ, len(self.sockets))
            self.sockets.append(sock)
            self.buffers.append(b"")
            self.in_body.append(False)
            self.remaining.append(None)
            self.seen_at.append(0.0)
        self.pump_until(
            lambda: all(r is not None for r in self.remaining[start:]),
            OPEN_TIMEOUT_S,
            "first events",
        )

    def pump_until(self, done, timeout: float, what: str) -> None:
        """Read whatever the streams send until ``done()`` (what a stream read is read at
        once: the latency measured is the client's as much as the server's)."""

        def pumped() -> bool:
            for key, _ in self.selector.select(timeout=0.5):
                self._read(key.data)
            return done()

        wait_until(pumped, timeout, 0, what=what)

    def _read(self, index: int) -> None:
        sock = self.sockets[index]
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            return
        if not chunk:
            raise RuntimeError(f"stream {index} was closed by the server")
        now = time.monotonic()
        buffer = self.buffers[index] + chunk
        if not self.in_body[index]:
            head, sep, rest = buffer.partition(b"\r\n\r\n")
            if not sep:
                self.buffers[index] = buffer
                return
            if b" 200 " not in head.split(b"\r\n", 1)[0]:
                raise RuntimeError(f"stream {index} answered {head[:200]!r}")
            self.in_body[index], buffer = True, rest
        *events, self.buffers[index] = buffer.split(b"\n\n")
        for event in events:
            for line in event.split(b"\n"):
                if line.startswith(b"data: "):
                    self.remaining[index] = json.loads(line[6:])["remaining"]
                    self.seen_at[index] = now
                    self.events += 1

    def close(self) -> None:
        for sock in self.sockets:
            self.selector.unregister(sock)
            sock.close()
        self.selector.close()


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed and os.geteuid() == 0:
        hard = needed
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(needed, hard)), hard))


def worker_pid(lab: Lab) -> int:
    """The one gunicorn worker: the child of the gunicorn master supervisord runs."""
    master = lab.pid_of("gunicorn")
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    if len(children) != 1:
        raise RuntimeError(f"expected one gunicorn worker, found {children}")
    return int(children[0])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure(lab: Lab, streams: int, rounds: int) -> dict:
    """The figures, on ``lab``'s stack (started with ``stack_args(streams)``)."""
    raise_fd_limit(streams + 1024)
    base, port = lab.url, lab.stack.port
    sale = lab.new_sale(1_000_000, 100)
    token = lab.buyers(1)[0]
    pid = worker_pid(lab)
    path = f"/api/v1/sales/{sale['id']}/stream"
    for _ in range(50):  # warm the worker: ordinary requests, then one stream
        requests.get(f"{base}/api/v1/sales/{sale['id']}", timeout=30).raise_for_status()
    warm = StreamClient(port, path)
    warm.open(1)
    warm.close()
    time.sleep(2)
    rss_before = rss_mb(pid)

    client = StreamClient(port, path)
    opened_at = time.monotonic()
    while len(client.sockets) < streams:
        client.open(min(OPEN_BATCH, streams - len(client.sockets)))
    open_seconds = time.monotonic() - opened_at
    rss_open = rss_mb(pid)

    latencies, events_before = [], client.events
    expected = client.remaining[0]
    for _ in range(rounds):
        expected -= 1
        sent_at = time.monotonic()
        buyer = threading.Thread(target=purchase, args=(base, sale["id"], token))
        buyer.start()
        client.pump_until(
            lambda: all(r == expected for r in client.remaining),
            EVENT_TIMEOUT_S,
            f"remaining {expected} on every stream",
        )
        buyer.join()
        latencies += [(seen - sent_at) * 1000 for seen in client.seen_at]
    rss_streams = max(rss_open, rss_mb(pid))
    client.close()
    return {
        "streams": streams,
        "rss_before_mb": round(rss_before, 1),
        "rss_with_streams_mb": round(rss_streams, 1),
        "rss_per_stream_kb": round((rss_streams - rss_before) * 1024 / streams, 2),
        "latency_p50_ms": round(statistics.median(latencies), 1),
        "latency_p99_ms": round(percentile(latencies, 0.99), 1),
        "latency_max_ms": round(max(latencies), 1),
        "events_received": client.events - events_before,
        "events_expected": streams * rounds,
        "purchases": rounds,
        "open_seconds": round(open_seconds, 1),
    }


def purchase(base: str, sale_id: str, token: str) -> None:
    response = requests.post(
        f"{base}/api/v1/sales/{sale_id}/orders",
        json={"quantity": 1},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex},
        timeout=30,
    )
    if response.status_code != 202:
        raise RuntimeError(f"purchase answered {response.status_code}: {response.text}")
