"""Foundation benchmark: the spillway stack against its baselines, side by side, in one run.

What it measures (all traffic to 127.0.0.1, load generated with wrk):

1. slow-isolation: /demo/index req/s and latency (``wrk -t2 -c8 --latency``) while a
   second wrk holds 1,000 ``/demo/slow?seconds=10`` requests open (``-c1000 -d25s
   --timeout 30s``; the index measurement starts 3 s in), for
   (a) the spillway stack through nginx (``spillway up``), and
   (b) the seed's naive server: bench/naive_seed_app.py, Flask's threaded dev server.
   Also how many slow requests completed, and how many slow connections were open.
2. healthz: /healthz through nginx (the stack) against the same app on gunicorn directly
   over TCP (2 gevent workers, no nginx), at -c64 and -c256, repeated and interleaved.
3. upstream keep-alive: /healthz at -c256 through the stack's nginx (no upstream
   keep-alive, as the template ships) against a second nginx rendered from the same
   config plus ``keepalive 64;`` in the upstream block; both proxy to the stack's gunicorn.
   The stack's own config is never modified.

The machine is small (2 cores) and shared, so absolute numbers drift from run to run;
only the ratios between measurements taken side by side in one run mean anything. That
is why every comparison runs in the same process, against servers that stay up for the
whole run, interleaved and repeated.

Run from the repository root (``make bench`` does the set-up first)::

    .venv/bin/python bench/foundation.py           # full: about 3-4 minutes
    .venv/bin/python bench/foundation.py --quick   # 5 s runs, 500 slow x 5 s: about 2 minutes

The report is printed as Markdown and written to bench/results/foundation.md. Every
process started here is stopped by PID / process group when the run ends, however it ends.
"""

import argparse
import datetime
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # for tests.servers, whichever directory we run from

from spillway.deploy.run_dir import RunDir  # noqa: E402
from tests.servers import Server  # noqa: E402
from tests.servers import binary  # noqa: E402
from tests.servers import free_port  # noqa: E402

RESULTS_FILE = REPO_ROOT / "bench" / "results" / "foundation.md"
NAIVE_APP = REPO_ROOT / "bench" / "naive_seed_app.py"
PYTHON = sys.executable
HOST = "127.0.0.1"
STACK_READY_TIMEOUT = 150
HEALTHZ_CONCURRENCY = (64, 256)
KEEPALIVE_CONCURRENCY = 256
PAUSE_BETWEEN_RUNS = 1.0  # lets sockets and the scheduler settle between measurements


@dataclass(frozen=True)
class Profile:
    """How long and how hard to measure."""

    name: str
    run_seconds: int  # each measured wrk run (index, healthz, keep-alive)
    slow_requests: int  # slow requests held in flight (wrk connections)
    slow_seconds: int  # how long each slow request sleeps
    slow_hold_seconds: int  # how long the slow wrk runs
    index_delay_seconds: int  # head start of the slow wrk before index is measured
    rounds: int  # interleaved repetitions of healthz and keep-alive

    @property
    def slow_timeout_seconds(self) -> int:
        # Generous: a slow request answered late is still counted, not a wrk timeout.
        return self.slow_seconds + 20


FULL = Profile("full", run_seconds=10, slow_requests=1000, slow_seconds=10,
               slow_hold_seconds=25, index_delay_seconds=3, rounds=2)
QUICK = Profile("quick", run_seconds=5, slow_requests=500, slow_seconds=5,
                slow_hold_seconds=12, index_delay_seconds=3, rounds=2)


# ---------------------------------------------------------------------------- wrk

@dataclass
class WrkResult:
    """What one wrk run reported; latencies in milliseconds, None when wrk printed none."""

    requests: int = 0
    rps: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    connect_errors: int = 0
    read_errors: int = 0
    write_errors: int = 0
    timeouts: int = 0
    non_2xx: int = 0  # wrk's "Non-2xx or 3xx responses"
    raw: str = ""

    @property
    def socket_errors(self) -> str:
        return f"{self.connect_errors}/{self.read_errors}/{self.write_errors}"


UNIT_TO_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
DURATION = r"([\d.]+)(us|ms|s|m|h)"  # "ms" before "m" and "s": alternation takes the first


def to_ms(value: str, unit: str) -> float:
    return float(value) * UNIT_TO_MS[unit]


def parse_wrk(text: str) -> WrkResult:
    """Read wrk's text report (run with --latency)."""
    result = WrkResult(raw=text)
    if match := re.search(r"^\s*(\d+) requests in", text, re.M):
        result.requests = int(match.group(1))
    if match := re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M):
        result.rps = float(match.group(1))
    if match := re.search(rf"^\s*Latency\s+{DURATION}\s+{DURATION}\s+{DURATION}", text, re.M):
        result.max_ms = to_ms(match.group(5), match.group(6))
    for percentile, field in (("50", "p50_ms"), ("99", "p99_ms")):
        if match := re.search(rf"^\s*{percentile}%\s+{DURATION}", text, re.M):
            setattr(result, field, to_ms(match.group(1), match.group(2)))
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                          r"timeout (\d+)", text):
        (result.connect_errors, result.read_errors, result.write_errors,
         result.timeouts) = map(int, match.groups())
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
        result.non_2xx = int(match.group(1))
    return result


def wrk_argv(url: str, connections: int, seconds: int, timeout: int | None = None,
             headers: dict[str, str] | None = None) -> list[str]:
    argv = [binary("wrk"), "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if timeout is not None:
        argv.append(f"--timeout={timeout}s")
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    return [*argv, url]


def run_wrk(url: str, connections: int, seconds: int,
            headers: dict[str, str] | None = None) -> WrkResult:
    """One measured wrk run with wrk's default 2 s timeout (slower answers count as timeouts)."""
    completed = subprocess.run(wrk_argv(url, connections, seconds, headers=headers),
                               capture_output=True,
                               text=True, timeout=seconds + 60, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr.strip()}")
    return parse_wrk(completed.stdout)


def start_wrk(url: str, connections: int, seconds: int, timeout: int) -> subprocess.Popen:
    """A wrk in the background (the slow requests), in its own process group."""
    return subprocess.Popen(wrk_argv(url, connections, seconds, timeout), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


def finish_wrk(process: subprocess.Popen, timeout: float) -> WrkResult:
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
    return parse_wrk(output)


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


# ---------------------------------------------------------------------------- servers

class Stack:
    """`spillway up` in the foreground, in its own session; SIGTERM stops everything."""

    def __init__(self, run_dir: Path, port: int, log_path: Path, extra_args: tuple = (),
                 env: dict | None = None):
        self.run_dir = run_dir
        self.port = port
        self.log_path = log_path
        self.extra_args = list(extra_args)
        # wrk drives the stack from one address: rate limits off unless a bench says on.
        self.env = {"SPILLWAY_RATE_LIMITS": "off", **(env or {})}
        self.process: subprocess.Popen | None = None

    @property
    def paths(self) -> RunDir:
        """Every path inside the stack's run directory."""
        return RunDir(self.run_dir)

    @property
    def gunicorn_log(self) -> Path:
        return self.paths.logs / "gunicorn.log"

    def start(self) -> "Stack":
        env = {**os.environ, **self.env}
        for name in ("SPILLWAY_ADMIN_TOKEN", "SPILLWAY_SECRET_KEY", "DATABASE_URL"):
            env.pop(name, None)  # let the stack generate its own, inside the run dir
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [PYTHON, "-m", "spillway", "up", "--run-dir", str(self.run_dir),
                 "--port", str(self.port), "--web-workers", "2", *self.extra_args],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT,
                start_new_session=True)
        self._wait_until_up()
        return self

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + STACK_READY_TIMEOUT
        while time.monotonic() < deadline:
            if "Spillway is up" in self.log_path.read_text(errors="replace"):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.5)
        raise RuntimeError(f"spillway up did not come up; its output:\n{self.output_tail()}\n"
                           f"logs: {self.paths.logs}/\n{self.logs_tail()}")

    def output_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def logs_tail(self, lines: int = 15) -> str:
        parts = []
        for path in sorted(self.paths.logs.glob("*.log")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(parts)

    def gunicorn_boots(self) -> int:
        """Worker boots so far: a recycled worker (--max-requests) shows up as a boot."""
        if not self.gunicorn_log.exists():
            return 0
        return self.gunicorn_log.read_text(errors="replace").count("Booting worker")

    def stop(self) -> None:
        """SIGTERM to `spillway up` (it forwards it to supervisord); SIGKILL as a last resort."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            print(f"warning: spillway up ignored SIGTERM; killing its process group "
                  f"{self.process.pid}", file=sys.stderr)
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


def naive_server(log_dir: Path) -> Server:
    port = free_port()
    return Server("naive-seed", [PYTHON, str(NAIVE_APP), str(port)], port, log_dir,
                  cwd=REPO_ROOT)


def direct_gunicorn(work_dir: Path, log_dir: Path) -> Server:
    """The stack's app on gunicorn alone, over TCP: what nginx costs or saves."""
    port = free_port()
    app_dir = work_dir / "gunicorn-direct"
    app_dir.mkdir()
    env = {**os.environ, "SPILLWAY_ENV": "test", "SPILLWAY_RUN_DIR": str(app_dir)}
    argv = [PYTHON, "-m", "gunicorn", "spillway.wsgi:app", "-k", "gevent", "-w", "2",
            "--worker-connections", "4096", "-b", f"{HOST}:{port}", "--no-control-socket",
            "--backlog", "4096"]
    return Server("gunicorn-direct", argv, port, log_dir, env=env, cwd=REPO_ROOT)


def keepalive_nginx(stack: Stack, work_dir: Path, log_dir: Path) -> Server:
    """A second nginx: the stack's rendered nginx.conf, on its own port, pid file and logs,
    with ``keepalive 64;`` added to the upstream block. Same gunicorn behind it."""
    port = free_port()
    own_dir = work_dir / "nginx-keepalive"
    own_dir.mkdir()
    config = own_dir / "nginx.conf"
    config.write_text(keepalive_variant((stack.paths.nginx_conf).read_text(),
                                        port, own_dir))
    argv = [binary("nginx"), "-c", str(config), "-e", str(own_dir / "error.log")]
    return Server("nginx-keepalive", argv, port, log_dir)


def keepalive_variant(config: str, port: int, own_dir: Path) -> str:
    """Rewrite the stack's nginx.conf; every edit must apply exactly once, so a changed
    template fails here loudly instead of silently benchmarking the wrong thing."""
    edits = [
        (r"listen\s+127\.0\.0\.1:\d+ backlog", f"listen {HOST}:{port} backlog"),
        # The loopback metrics server: its port is the stack's own nginx's.
        (r"listen\s+127\.0\.0\.1:\d+;", f"listen {HOST}:{free_port()};"),
        (r"^pid\s+\S+;", f"pid {own_dir}/nginx.pid;"),
        (r"^error_log\s+\S+", f"error_log {own_dir}/error.log"),
        (r"access_log\s+\S+nginx-access\.log", f"access_log {own_dir}/access.log"),
        (r"(server unix:\S+gunicorn\.sock[^;]*;)", r"\1\n        keepalive 64;"),
    ]
    for pattern, replacement in edits:
        config, count = re.subn(pattern, replacement, config, flags=re.M)
        if count != 1:
            raise RuntimeError(f"nginx.conf: expected one match for {pattern!r}, got {count}")
    return config


def check_answers(base_url: str, path: str, expected: str, times: int = 20) -> None:
    """Sanity check (and warm-up): the server answers what the benchmark expects."""
    with requests.Session() as session:
        for _ in range(times):
            response = session.get(base_url + path, timeout=10)
            if response.status_code != 200 or expected not in response.text:
                raise RuntimeError(f"{base_url}{path}: {response.status_code} {response.text!r}")


# ---------------------------------------------------------------------------- phases

class Progress:
    def __init__(self, total: int):
        self.total = total
        self.done = 0

    def step(self, message: str) -> None:
        self.done += 1
        print(f"[{self.done}/{self.total}] {message} …", flush=True)


@dataclass
class SlowIsolation:
    server: str
    slow_open: int  # slow connections open when the index measurement started
    index: WrkResult
    slow: WrkResult


@dataclass
class Measurement:
    round: int
    connections: int
    target: str
    result: WrkResult
    worker_boots: int | None  # stack gunicorn worker boots during the run; None: not the stack


def slow_isolation(name: str, base_url: str, port: int, profile: Profile) -> SlowIsolation:
    """Index latency with the slow requests in flight; the slow wrk runs on throughout."""
    slow_url = f"{base_url}/demo/slow?seconds={profile.slow_seconds}"
    slow = start_wrk(slow_url, profile.slow_requests, profile.slow_hold_seconds,
                     profile.slow_timeout_seconds)
    try:
        time.sleep(profile.index_delay_seconds)  # let all the slow requests get in
        slow_open = open_connections_to(port)
        index = run_wrk(f"{base_url}/demo/index", 8, profile.run_seconds)
        slow_result = finish_wrk(slow, profile.slow_hold_seconds + 30)
    finally:
        if slow.poll() is None:
            os.killpg(slow.pid, signal.SIGKILL)
            slow.wait()
    return SlowIsolation(name, slow_open, index, slow_result)


def measure(url: str, connections: int, seconds: int, round_: int, target: str,
            stack: Stack | None) -> Measurement:
    """One wrk run; for runs served by the stack's gunicorn, count worker recycles too."""
    boots_before = stack.gunicorn_boots() if stack else 0
    result = run_wrk(url, connections, seconds)
    boots = stack.gunicorn_boots() - boots_before if stack else None
    time.sleep(PAUSE_BETWEEN_RUNS)
    return Measurement(round_, connections, target, result, boots)


def interleaved(round_: int, targets: list) -> list:
    """Alternate the order every round so neither target always runs first."""
    return targets if round_ % 2 == 1 else list(reversed(targets))


# ---------------------------------------------------------------------------- report

def ms(value: float | None) -> str:
    if value is None:
        return "–"
    if value < 10:
        return f"{value:.2f}"
    return f"{value:.1f}" if value < 1000 else f"{value:,.0f}"


def boots(value: int | None) -> str:
    return "–" if value is None else str(value)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def ratio(numerator: float | None, denominator: float | None) -> str:
    if not numerator or not denominator:
        return "–"
    return f"{numerator / denominator:.2f}"


def git_revision() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                              check=False).stdout.strip()
    dirty = " (with uncommitted changes)" if git("status", "--porcelain", "--", "src") else ""
    return (git("rev-parse", "--short", "HEAD") or "unknown") + dirty


def slow_section(results: list[SlowIsolation], profile: Profile) -> str:
    possible = profile.slow_requests * (profile.slow_hold_seconds // profile.slow_seconds)
    rows = [[r.server, f"{r.slow_open:,}", f"{r.index.rps:,.0f}", ms(r.index.p50_ms),
             ms(r.index.p99_ms), ms(r.index.max_ms), str(r.index.timeouts),
             r.index.socket_errors, str(r.index.non_2xx), f"{r.slow.requests:,}",
             str(r.slow.timeouts), r.slow.socket_errors, str(r.slow.non_2xx)]
            for r in results]
    header = ["server", "slow conns open", "index req/s", "index p50 ms", "index p99 ms",
              "index max ms", "index timeouts", "index errors c/r/w", "index non-2xx",
              f"slow completed (max {possible:,})", "slow timeouts", "slow errors c/r/w",
              "slow non-2xx"]
    return (f"## 1. slow-isolation: /demo/index with {profile.slow_requests:,} "
            f"/demo/slow?seconds={profile.slow_seconds} in flight\n\n"
            f"index: `wrk -t2 -c8 -d{profile.run_seconds}s --latency` (2 s timeout), "
            f"started {profile.index_delay_seconds} s after the slow wrk "
            f"(`-t2 -c{profile.slow_requests} -d{profile.slow_hold_seconds}s "
            f"--timeout {profile.slow_timeout_seconds}s`). \"slow conns open\": wrk's "
            f"established connections when the index run started.\n\n" + table(header, rows))


def measurement_rows(measurements: list[Measurement]) -> list[list[str]]:
    return [[str(m.round), str(m.connections), m.target, f"{m.result.rps:,.0f}",
             ms(m.result.p50_ms), ms(m.result.p99_ms), ms(m.result.max_ms),
             str(m.result.timeouts), m.result.socket_errors, str(m.result.non_2xx),
             boots(m.worker_boots)] for m in measurements]


MEASUREMENT_HEADER = ["round", "conns", "path", "req/s", "p50 ms", "p99 ms", "max ms",
                      "timeouts", "errors c/r/w", "non-2xx", "worker boots"]


def paired_ratios(measurements: list[Measurement], numerator: str, denominator: str,
                  label: str) -> str:
    """req/s and p99 of one target over the other, per round and concurrency."""
    by_key = {(m.round, m.connections, m.target): m.result for m in measurements}
    rows = []
    for round_, connections in sorted({(m.round, m.connections) for m in measurements}):
        top = by_key.get((round_, connections, numerator))
        bottom = by_key.get((round_, connections, denominator))
        if top and bottom:
            rows.append([str(round_), str(connections), ratio(top.rps, bottom.rps),
                         ratio(top.p50_ms, bottom.p50_ms), ratio(top.p99_ms, bottom.p99_ms)])
    return table(["round", "conns", f"req/s {label}", f"p50 {label}", f"p99 {label}"], rows)


def healthz_section(measurements: list[Measurement], profile: Profile) -> str:
    return (f"## 2. /healthz: through nginx (the stack) vs gunicorn directly over TCP\n\n"
            f"`wrk -t2 -cN -d{profile.run_seconds}s --latency` (2 s timeout), "
            f"{profile.rounds} interleaved rounds. \"worker boots\": stack gunicorn workers "
            f"(re)booted during the run (--max-requests recycling).\n\n"
            + table(MEASUREMENT_HEADER, measurement_rows(measurements)) + "\n\n"
            + paired_ratios(measurements, "nginx", "direct", "nginx ÷ direct"))


def keepalive_section(measurements: list[Measurement], profile: Profile) -> str:
    return (f"## 3. nginx → gunicorn upstream keep-alive, /healthz at "
            f"-c{KEEPALIVE_CONCURRENCY}\n\n"
            f"\"no keepalive\": the stack's nginx as the template renders it; "
            f"\"keepalive 64\": a second nginx, same config plus `keepalive 64;` in the "
            f"upstream block, same gunicorn. `wrk -t2 -c{KEEPALIVE_CONCURRENCY} "
            f"-d{profile.run_seconds}s --latency` (2 s timeout), {profile.rounds} "
            f"interleaved rounds.\n\n"
            + table(MEASUREMENT_HEADER, measurement_rows(measurements)) + "\n\n"
            + paired_ratios(measurements, "keepalive 64", "no keepalive",
                            "keepalive ÷ none"))


def render_report(profile: Profile, started: datetime.datetime, load_before: float,
                  slow: list[SlowIsolation], healthz: list[Measurement],
                  keepalive: list[Measurement]) -> str:
    header = (f"# Foundation benchmark ({profile.name})\n\n"
              f"- run: {started:%Y-%m-%d %H:%M} UTC, commit {git_revision()}, "
              f"{os.cpu_count()} cores, load average {load_before:.2f} before / "
              f"{os.getloadavg()[0]:.2f} after\n"
              f"- stack: `spillway up --web-workers 2` (nginx → gunicorn gevent ×2 on a unix "
              f"socket); direct: `gunicorn -k gevent -w 2` on TCP; naive: Flask's threaded "
              f"dev server\n"
              f"- shared, noisy machine: compare ratios within this run, not absolute numbers "
              f"across runs. Latencies exclude requests that timed out (wrk's default 2 s).\n")
    return "\n\n".join([header, slow_section(slow, profile), healthz_section(healthz, profile),
                        keepalive_section(keepalive, profile)]) + "\n"


# ---------------------------------------------------------------------------- main

def run(profile: Profile, work_dir: Path, started: datetime.datetime) -> str:
    load_before = os.getloadavg()[0]
    log_dir = work_dir / "logs"
    log_dir.mkdir()
    run_dir = work_dir / "run"
    run_dir.mkdir()
    run_dir.chmod(0o755)  # the spillway user must reach the sockets inside
    progress = Progress(total=6 + profile.rounds * (2 * len(HEALTHZ_CONCURRENCY) + 2))
    started_servers: list = []  # stopped in reverse order, whatever happens
    try:
        progress.step("starting the stack (spillway up)")
        stack = Stack(run_dir, free_port(), log_dir / "spillway-up.log")
        started_servers.append(stack)
        stack.start()
        stack_url = f"http://{HOST}:{stack.port}"

        progress.step("starting the naive seed server, direct gunicorn, keep-alive nginx")
        naive = naive_server(log_dir)
        direct = direct_gunicorn(work_dir, log_dir)
        nginx_ka = keepalive_nginx(stack, work_dir, log_dir)
        for server in (naive, direct, nginx_ka):
            started_servers.append(server)
            server.start()
        naive_url, direct_url = f"http://{HOST}:{naive.port}", f"http://{HOST}:{direct.port}"
        nginx_ka_url = f"http://{HOST}:{nginx_ka.port}"
        for url in (stack_url, naive_url):
            check_answers(url, "/demo/index", "Beijing")
        for url in (stack_url, direct_url, nginx_ka_url):
            check_answers(url, "/healthz", '"ok"')

        progress.step("slow-isolation: spillway (nginx → gunicorn gevent)")
        slow = [slow_isolation("spillway (nginx → gunicorn gevent)", stack_url, stack.port,
                               profile)]
        progress.step("slow-isolation: naive seed (Flask dev server, threaded)")
        slow.append(slow_isolation("naive seed (Flask dev server)", naive_url, naive.port,
                                   profile))
        progress.step("stopping the naive seed server (its slow threads would linger)")
        naive.stop()

        healthz = []
        for round_ in range(1, profile.rounds + 1):
            for connections in HEALTHZ_CONCURRENCY:
                for target, url, served_by in interleaved(round_, [
                        ("nginx", stack_url, stack), ("direct", direct_url, None)]):
                    progress.step(f"healthz round {round_}: {target} -c{connections}")
                    healthz.append(measure(f"{url}/healthz", connections, profile.run_seconds,
                                           round_, target, served_by))

        keepalive = []
        for round_ in range(1, profile.rounds + 1):
            for target, url in interleaved(round_, [("no keepalive", stack_url),
                                                    ("keepalive 64", nginx_ka_url)]):
                progress.step(f"upstream keep-alive round {round_}: {target} "
                              f"-c{KEEPALIVE_CONCURRENCY}")
                keepalive.append(measure(f"{url}/healthz", KEEPALIVE_CONCURRENCY,
                                         profile.run_seconds, round_, target, stack))

        progress.step("stopping everything")
    finally:
        stop_all(started_servers)
    return render_report(profile, started, load_before, slow, healthz, keepalive)


def stop_all(servers: list) -> None:
    """Stop every server this run started, newest first; one failure must not stop the rest."""
    for server in reversed(servers):
        try:
            server.stop()
        except Exception as exc:  # noqa: BLE001  (report, and go on stopping the others)
            name = getattr(server, "name", type(server).__name__)
            print(f"warning: could not stop {name}: {exc}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="5 s runs, 500 slow requests of 5 s: about 2 minutes")
    profile = QUICK if parser.parse_args().quick else FULL
    # SIGTERM (e.g. to `make bench`) unwinds like Ctrl-C, so the finally blocks stop servers.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(143))
    started = datetime.datetime.now(datetime.timezone.utc)
    work_dir = Path(tempfile.mkdtemp(prefix="spillway-bench-"))
    work_dir.chmod(0o755)  # world-traversable: the app runs as the spillway user
    try:
        report = run(profile, work_dir, started)
    except Exception:
        print(f"benchmark failed; logs kept in {work_dir}/logs and {work_dir}/run/logs",
              file=sys.stderr)
        raise
    shutil.rmtree(work_dir, ignore_errors=True)
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_FILE.write_text(report)
    elapsed = datetime.datetime.now(datetime.timezone.utc) - started
    print(f"\n{report}\n(written to {RESULTS_FILE.relative_to(REPO_ROOT)}; "
          f"took {elapsed.total_seconds():.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
