"""The stack's promises for any app on it, checked through nginx the same way for the flash
sale (test_stack.py), the tutorial's app (test_your_app.py) and a plain Flask app
(test_plain_app.py)."""

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

SLOW_IN_FLIGHT = 200


def uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def assert_not_root(stack, programs: tuple[str, ...]) -> None:
    """Each program, its master and its children, runs unprivileged."""
    for program in programs:
        pid = stack.program_pid(program)
        pids = [pid, *children_of(pid)]
        assert all(uid_of(p) != 0 for p in pids), (program, pids)


def assert_fast_while_slow(
    base_url: str, slow_path: str, fast_path: str, slow_text: str, fast_text: str
) -> None:
    """``fast_path`` answers well under a second while 200 ``slow_path`` requests sleep
    (each a greenlet: a sleeping one costs a few kilobytes, not a worker)."""
    with ThreadPoolExecutor(max_workers=SLOW_IN_FLIGHT) as pool:
        slow = [
            pool.submit(requests.get, f"{base_url}{slow_path}", timeout=60)
            for _ in range(SLOW_IN_FLIGHT)
        ]
        time.sleep(2.0)
        timings = []
        for _ in range(5):
            started = time.monotonic()
            response = requests.get(f"{base_url}{fast_path}", timeout=10)
            timings.append(time.monotonic() - started)
            assert response.text == fast_text
        in_flight = sum(not f.done() for f in slow)
        answers = [f.result() for f in slow]
    assert in_flight >= SLOW_IN_FLIGHT * 0.9, f"only {in_flight} slow requests were in flight"
    assert max(timings) < 1.0, f"{fast_path} took {max(timings):.2f}s"
    assert all(a.status_code == 200 and a.text == slow_text for a in answers)
