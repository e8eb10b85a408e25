"""What `make run` and `make test` would install, read from make's own dry run (-n -B:
every step printed, none run) against a venv that does not exist yet."""

import subprocess
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
ONLY_FOR_TESTS = ("chromium", "postgresql", "wrk", "iproute2", "curl", "[test]")


def dry_run(target: str) -> str:
    return subprocess.run(
        ["make", "-n", "-B", target, "VENV=/nonexistent/venv"],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def test_make_run_installs_only_what_running_needs():
    """A first `make run` installs the stack's packages and the project alone: no browser,
    no PostgreSQL server, no test tools; and it says what it is installing."""
    steps = dry_run("run")
    for package in ("redis-server", "memcached", "nginx", "python3-venv"):
        assert package in steps
    assert not [name for name in ONLY_FOR_TESTS if name in steps]
    assert "pip install -e .\n" in steps and "--quiet" not in steps
    assert "make: installing spillway" in steps


def test_make_test_installs_what_running_and_testing_need():
    """`make test` installs the test-only packages and extras on top of what running needs."""
    steps = dry_run("test")
    assert all(name in steps for name in ONLY_FOR_TESTS)
    assert "redis-server" in steps and "pip install -e .\n" in steps
