"""wrk runs, the bench's one load generator: plain GETs and scripted purchases, with the
full latency distribution.

Every scripted run gets a Lua ``done()`` that prints more percentiles than ``--latency``
does (it runs once, after the load, so it costs nothing per request). Purchase runs add
``request()`` (rotating buyers, a fresh Idempotency-Key each, every tenth request a replay
of an earlier key unless told otherwise) and ``response()`` (status counts, and the order
ids of 200/202 answers written to one file per wrk thread, for the audit).
"""

import re
import subprocess
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

from harness import cpu
from tests.servers import binary

PERCENTILES = (50, 75, 90, 95, 99, 99.9, 99.99)

DONE = """
function done(summary, latency, requests)
  for _, p in ipairs({%(percentiles)s}) do
    io.write(string.format("PCT %%g %%d\\n", p, latency:percentile(p)))
  end
  local total = {}
  for _, t in ipairs(threads) do
    local counts = t:get("counts") or {}
    for status, n in pairs(counts) do total[status] = (total[status] or 0) + n end
  end
  for status, n in pairs(total) do io.write(string.format("STATUS %%d %%d\\n", status, n)) end
end
"""  # a template, like the scripts built on it: %(percentiles)s, and %% for a Lua %
ALL_PERCENTILES = ", ".join(str(p) for p in PERCENTILES)

GET_SCRIPT = (
    """
threads = {}
function setup(thread) table.insert(threads, thread) end
"""
    + DONE
)

# %(tokens)s: the buyers' tokens; %(method)s, %(headers)s and %(body)s: the request;
# %(replay)d: every how many requests one repeats an earlier key (0: never). wrk's arguments
# after "--": a tag that keeps keys unique across runs, and the path prefix of the id files.
PURCHASE_SCRIPT = (
    """
local tokens = {%(tokens)s}
local replay = %(replay)d
threads = {}
local counter = 0
function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end
function init(args)
  prefix = (args[1] or "r") .. "-" .. tid .. "-"
  counts = {}
  if args[2] then out = io.open(args[2] .. "." .. tid, "w") end
end
function request()
  counter = counter + 1
  local n = counter
  if replay > 0 and n %% replay == 0 and n > replay then n = n - 5 end  -- same buyer, key
  local headers = {%(headers)s["Authorization"] = "Bearer " .. tokens[n %% #tokens + 1],
                   ["Content-Type"] = "application/json",
                   ["Idempotency-Key"] = prefix .. n,
                   ["X-User"] = tostring(n %% #tokens)}
  return wrk.format("%(method)s", wrk.path, headers, %(body)s)
end
function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
  if out and (status == 200 or status == 202) then
    local order_id = body:match('"order_id":%%s*"([^"]+)"')
    if order_id then out:write(status, " ", order_id, "\\n") end
  end
end
"""
    + DONE
)


@dataclass
class Run:
    """One wrk run, as the reports and the JSON keep it; latencies in milliseconds, None
    when wrk printed none (nothing was answered)."""

    scenario: str = ""
    target: str = ""
    connections: int = 0
    seconds: int = 0
    requests: int = 0
    rps: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    percentiles_ms: dict = field(default_factory=dict)
    statuses: dict = field(default_factory=dict)
    timeouts: int = 0
    socket_errors: int = 0
    non_2xx: int = 0  # wrk's "Non-2xx or 3xx responses"
    cpu_us_per_request: float | None = None  # the serving process tree's CPU, see cpu.py
    note: str = ""

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if int(status) >= 500)

    @property
    def errors(self) -> int:
        """Failures: timeouts, socket errors, 5xx — and for plain GETs any non-2xx."""
        failed = self.server_errors if self.statuses else self.non_2xx
        return self.timeouts + self.socket_errors + failed

    def to_dict(self) -> dict:
        return {**asdict(self), "errors": self.errors, "server_errors": self.server_errors}


UNIT_TO_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
DURATION = r"([\d.]+)(us|ms|s|m|h)"  # "ms" before "m" and "s": alternation takes the first


def parse(text: str, run: Run) -> Run:
    """Fill ``run`` from wrk's report (run with --latency, and our ``done()`` if scripted)."""

    def ms(value: str, unit: str) -> float:
        return float(value) * UNIT_TO_MS[unit]

    if match := re.search(r"^\s*(\d+) requests in", text, re.M):
        run.requests = int(match.group(1))
    if match := re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M):
        run.rps = float(match.group(1))
    if match := re.search(rf"^\s*Latency\s+{DURATION}\s+{DURATION}\s+{DURATION}", text, re.M):
        run.max_ms = ms(match.group(5), match.group(6))
    for percentile, name in (("50", "p50_ms"), ("99", "p99_ms")):
        if match := re.search(rf"^\s*{percentile}%\s+{DURATION}", text, re.M):
            setattr(run, name, ms(match.group(1), match.group(2)))
    if match := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), "
        r"timeout (\d+)",
        text,
    ):
        *errors, timeouts = map(int, match.groups())
        run.socket_errors, run.timeouts = sum(errors), timeouts
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
        run.non_2xx = int(match.group(1))
    for match in re.finditer(r"^PCT ([\d.]+) (\d+)$", text, re.M):
        run.percentiles_ms[match.group(1)] = int(match.group(2)) / 1000
    for match in re.finditer(r"^STATUS (\d+) (\d+)$", text, re.M):
        run.statuses[match.group(1)] = int(match.group(2))
    if run.requests and run.percentiles_ms.get("99"):
        run.p99_ms = run.percentiles_ms["99"]
    if not run.requests:  # wrk prints zero latencies then
        run.p50_ms = run.p99_ms = run.max_ms = None
    return run


def write_purchase_script(
    path: Path,
    tokens: list[str],
    method: str = "POST",
    replay_every: int = 10,
    headers: dict | None = None,
) -> Path:
    """The purchase script for ``tokens`` (GET: the same headers on a bare view, so that
    wrk's own Lua work weighs on both sides alike)."""
    body = "'{\"quantity\": 1}'" if method == "POST" else "nil"
    extra = "".join(f'["{name}"] = "{value}", ' for name, value in (headers or {}).items())
    quoted = ",".join(f'"{token}"' for token in tokens)
    path.write_text(
        PURCHASE_SCRIPT
        % {
            "tokens": quoted,
            "method": method,
            "body": body,
            "replay": replay_every,
            "headers": extra,
            "percentiles": ALL_PERCENTILES,
        }
    )
    return path


def write_get_script(path: Path) -> Path:
    path.write_text(GET_SCRIPT % {"percentiles": ALL_PERCENTILES})
    return path


def argv(
    url: str,
    connections: int,
    seconds: int,
    script: Path | None,
    headers: dict | None,
    script_args: tuple,
    timeout_s: int,
) -> list[str]:
    line = [
        binary("wrk"),
        "-t2",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        f"--timeout={timeout_s}s",
    ]
    if script:
        line += ["-s", str(script)]
    for name, value in (headers or {}).items():
        line += ["-H", f"{name}: {value}"]
    line.append(url)
    return [*line, "--", *script_args] if script_args else line


def run(
    url: str,
    connections: int,
    seconds: int,
    script: Path | None = None,
    *,
    scenario: str = "",
    target: str = "",
    headers: dict | None = None,
    script_args: tuple = (),
    timeout_s: int = 2,
    server_pid: int | None = None,
) -> Run:
    """One measured wrk run (``-t2``); wrk's own failure raises. With ``server_pid``, the
    CPU its process tree used per request is measured too."""
    meter = cpu.Meter(server_pid).start()
    done = subprocess.run(
        argv(url, connections, seconds, script, headers, script_args, timeout_s),
        capture_output=True,
        text=True,
        timeout=seconds + 90,
        check=False,
    )
    used = meter.stop()
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}) on {url}: {done.stderr.strip()}")
    result = parse(done.stdout, Run(scenario, target, connections, seconds))
    if used is not None and result.requests:
        result.cpu_us_per_request = used / result.requests * 1e6
    return result


def start(url: str, connections: int, seconds: int, timeout_s: int) -> subprocess.Popen:
    """A wrk in the background (load held while another is measured), in its own group."""
    return subprocess.Popen(
        argv(url, connections, seconds, None, None, (), timeout_s),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def finish(process: subprocess.Popen, timeout: float) -> Run:
    """What a background wrk reported; killed if it overruns ``timeout``."""
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return parse(output, Run())


def order_ids(prefix: Path) -> tuple[list[str], list[str]]:
    """The order ids of a scripted run's 202 and 200 answers, from its per-thread files."""
    accepted, replayed = [], []
    for path in sorted(prefix.parent.glob(prefix.name + ".*")):
        for line in path.read_text().splitlines():
            status, _, order_id = line.partition(" ")
            (accepted if status == "202" else replayed).append(order_id)
    return accepted, replayed
