"""wrk runs: plain GETs and scripted purchases, with the full latency distribution.

Every run gets a Lua ``done()`` that prints more percentiles than ``--latency`` does (it
runs once, after the load, so it costs nothing per request). Purchase runs add
``request()`` (rotating buyers, a fresh Idempotency-Key each, every tenth request a replay
of an earlier key) and ``response()`` (status counts, and the order ids of 200/202 answers
written to one file per wrk thread, for the audit).
"""

import re
import subprocess
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

from foundation import parse_wrk

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
""" % {"percentiles": ", ".join(str(p) for p in PERCENTILES)}

GET_SCRIPT = """
threads = {}
function setup(thread) table.insert(threads, thread) end
""" + DONE

# %(tokens)s: the buyers' tokens; %(method)s and %(body)s: the request. wrk's arguments
# after "--": a tag that keeps keys unique across runs, and the path prefix of the id files.
SCRIPTED = """
local tokens = {%(tokens)s}
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
  if n %% 10 == 0 and n > 10 then n = n - 5 end  -- a replay: same buyer, same key
  local headers = {["Authorization"] = "Bearer " .. tokens[n %% #tokens + 1],
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


@dataclass
class Run:
    """One wrk run, as the report and the JSON keep it; latencies in milliseconds."""

    scenario: str
    target: str
    connections: int
    seconds: int
    requests: int = 0
    rps: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    percentiles_ms: dict = field(default_factory=dict)
    statuses: dict = field(default_factory=dict)
    timeouts: int = 0
    socket_errors: int = 0
    non_2xx: int = 0
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


def write_purchase_script(path: Path, tokens: list[str], method: str = "POST") -> Path:
    body = "'{\"quantity\": 1}'" if method == "POST" else "nil"
    quoted = ",".join(f'"{token}"' for token in tokens)
    path.write_text(SCRIPTED % {"tokens": quoted, "method": method, "body": body} + DONE)
    return path


def write_get_script(path: Path) -> Path:
    path.write_text(GET_SCRIPT)
    return path


def run(scenario: str, target: str, url: str, connections: int, seconds: int, script: Path,
        headers: dict | None = None, script_args: tuple = (), timeout_s: int = 2,
        server_pid: int | None = None) -> Run:
    """One measured wrk run (``-t2``); wrk's own failure raises. With ``server_pid``, the
    CPU its process tree used per request is measured too."""
    argv = [binary("wrk"), "-t2", f"-c{connections}", f"-d{seconds}s", "--latency",
            f"--timeout={timeout_s}s", "-s", str(script)]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    argv.append(url)
    if script_args:
        argv += ["--", *script_args]
    meter = cpu.Meter(server_pid).start()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 90,
                          check=False)
    used = meter.stop()
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}) on {url}: {done.stderr.strip()}")
    parsed = parse_wrk(done.stdout)
    result = Run(scenario, target, connections, seconds, parsed.requests, parsed.rps,
                 parsed.p50_ms, parsed.p99_ms, parsed.max_ms, timeouts=parsed.timeouts,
                 socket_errors=parsed.connect_errors + parsed.read_errors
                 + parsed.write_errors, non_2xx=parsed.non_2xx)
    for match in re.finditer(r"^PCT ([\d.]+) (\d+)$", done.stdout, re.M):
        result.percentiles_ms[match.group(1)] = int(match.group(2)) / 1000
    for match in re.finditer(r"^STATUS (\d+) (\d+)$", done.stdout, re.M):
        result.statuses[match.group(1)] = int(match.group(2))
    if used is not None and parsed.requests:
        result.cpu_us_per_request = used / parsed.requests * 1e6
    if parsed.requests and result.percentiles_ms.get("99"):
        result.p99_ms = result.percentiles_ms["99"]
    return result


def order_ids(prefix: Path) -> tuple[list[str], list[str]]:
    """The order ids of a scripted run's 202 and 200 answers, from its per-thread files."""
    accepted, replayed = [], []
    for path in sorted(prefix.parent.glob(prefix.name + ".*")):
        for line in path.read_text().splitlines():
            status, _, order_id = line.partition(" ")
            (accepted if status == "202" else replayed).append(order_id)
    return accepted, replayed
