"""Machine facts for the top of the report: where and with what the numbers were taken."""

import datetime
import importlib.metadata
import os
import platform
import re
import subprocess
from pathlib import Path

from tests.servers import binary

REPO_ROOT = Path(__file__).resolve().parents[2]

PACKAGES = (
    "flask",
    "werkzeug",
    "gunicorn",
    "gevent",
    "greenlet",
    "celery",
    "redis",
    "pymemcache",
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "pydantic",
    "aiomcache",
)


def _output(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    return (done.stdout + done.stderr).strip()


def _first(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    return match.group(1) if match else text.splitlines()[0] if text else "unknown"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def git(*args: str) -> str:
    return _output(["git", "-C", str(REPO_ROOT), *args])


def collect() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    dirty = bool(git("status", "--porcelain", "--", "src", "bench").strip())
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git("rev-parse", "--short", "HEAD") + (" (uncommitted changes)" if dirty else ""),
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_before": round(os.getloadavg()[0], 2),
        "nginx": _first(r"nginx/(\S+)", _output([binary("nginx"), "-v"])),
        "redis": _first(r"v=(\S+)", _output([binary("redis-server"), "--version"])),
        "memcached": _first(r"memcached (\S+)", _output([binary("memcached"), "-V"])),
        "wrk": _first(r"wrk (\S+)", _output([binary("wrk"), "-v"])),
        "packages": versions,
    }
