"""A checkout only root can enter, as a clone in root's own home is (/root is 0700):
`make run` comes up there all the same, as root, with every app process run as the service
user from a readable copy that it cannot change, and the operator's commands typed in that
checkout find the stack by themselves.

The checkout is this one's files (tracked and new, so uncommitted work is what is tested)
copied into a fresh 0700 directory; `make run` builds its own venv there, as a user's
first `make run` would (about half a minute of pip from the local wheel cache).
"""

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from spillway.deploy.readable import readable_home
from spillway.deploy.run_dir import RunDir
from tests.e2e.promises import assert_not_root
from tests.servers import free_port
from tests.waiting import wait_until

REPOSITORY = Path(__file__).resolve().parents[2]
# A first `make run`: the venv (pip, from the wheel cache), the copy, migrations, start.
FIRST_RUN_TIMEOUT = 420
# What the suite's own environment sets that a user's shell would not (and make's own).
NOT_A_USERS = ("SPILLWAY_", "DATABASE_URL", "MAKE", "MFLAGS", "VIRTUAL_ENV", "PYTHONPATH")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the closed checkout is root's")


@dataclass
class MakeRun:
    """A running `make run`: its process, run directory, public URL and screen."""

    process: subprocess.Popen
    run_dir: Path
    base_url: str
    log_path: Path

    def program_pid(self, program: str) -> int:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "supervisor.supervisorctl",
                "-c",
                str(RunDir(self.run_dir).supervisord_conf),
                "pid",
                program,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        return int(result.stdout.strip())


def users_environment(**settings: str) -> dict[str, str]:
    """The suite's environment without the settings a user would not have, plus ``settings``."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(NOT_A_USERS)}
    return {**kept, **settings}


def copy_checkout(target: Path) -> None:
    """This checkout's files, as a clone would have them, plus the ones not committed yet."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPOSITORY,
            check=True,
            capture_output=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        source = REPOSITORY / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def is_up(stack: MakeRun) -> bool:
    """Whether `make run` printed the banner; fails at once if it exited instead."""
    printed = stack.log_path.read_text(errors="replace")
    assert stack.process.poll() is None, f"make run exited:\n{printed[-4000:]}"
    return "Spillway is up" in printed


@pytest.fixture(scope="module")
def closed_stack():
    """`make run` in a checkout inside a 0700 directory; Ctrl-C (SIGINT to its process
    group, as a terminal sends it) stops it; the checkout and its readable home go after."""
    closed = Path(tempfile.mkdtemp(prefix="spillway-closed-"))  # 0700, like /root
    checkout = closed / "spillway"
    checkout.mkdir()
    copy_checkout(checkout)
    port = free_port()
    log_path = closed.with_suffix(".log")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            ["make", "run"],
            cwd=checkout,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=users_environment(
                SPILLWAY_PORT=str(port), SPILLWAY_RATE_LIMITS="off", SPILLWAY_WEB_WORKERS="2"
            ),
        )
    stack = MakeRun(process, checkout / "run", f"http://127.0.0.1:{port}", log_path)
    try:
        wait_until(lambda: is_up(stack), FIRST_RUN_TIMEOUT, 1, what="make run's banner")
        stack.run_dir = (checkout / "run").resolve()
        yield stack, checkout
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        artifacts = Path(os.environ.get("SPILLWAY_TEST_ARTIFACTS", "test-artifacts"))
        logs = RunDir((checkout / "run").resolve()).logs
        if logs.is_dir():
            shutil.copytree(logs, artifacts / closed.name, dirs_exist_ok=True)
        (artifacts / closed.name).mkdir(parents=True, exist_ok=True)
        shutil.move(log_path, artifacts / closed.name / "make-run.log")
        home = readable_home(checkout)
        shutil.rmtree(home, ignore_errors=True)
        home.with_suffix(".lock").unlink(missing_ok=True)
        shutil.rmtree(closed, ignore_errors=True)


@pytest.mark.timeout(FIRST_RUN_TIMEOUT + 120)
def test_make_run_comes_up_in_a_closed_checkout(closed_stack):
    """The README's `make run`, as root in a directory no other user can enter: the shop
    serves through nginx, and ./run links to the run directory in the readable home."""
    stack, checkout = closed_stack
    products = requests.get(f"{stack.base_url}/api/v1/products", timeout=10)
    assert products.status_code == 200 and products.json()["total"] > 0
    assert requests.get(f"{stack.base_url}/readyz", timeout=10).status_code == 200
    assert (checkout / "run").is_symlink()
    assert stack.run_dir == readable_home(checkout) / "run"


def test_app_processes_run_unprivileged_from_the_readable_copy(closed_stack):
    """gunicorn and Celery (masters and children) are the service user's, and the
    interpreter they run is the copy's, not the closed venv's."""
    stack, checkout = closed_stack
    assert_not_root(stack, ("gunicorn", "celery-worker", "celery-beat"))
    for program in ("gunicorn", "celery-worker"):
        command = Path(f"/proc/{stack.program_pid(program)}/cmdline").read_bytes().split(b"\0")
        assert Path(command[0].decode()).is_relative_to(readable_home(checkout) / "venv")


def test_nothing_the_service_user_runs_is_its_to_change(closed_stack):
    """The privilege boundary holds for the copy: every directory and file in it is root's
    and writable by root alone, and so is every directory above it."""
    _stack, checkout = closed_stack
    home = readable_home(checkout)
    for top in (home / "venv", home / "paths"):
        for path in [top, *top.rglob("*")]:
            info = path.lstat()
            assert info.st_uid == 0, path
            assert stat.S_ISLNK(info.st_mode) or not info.st_mode & 0o022, path
    for parent in home.parents:
        assert parent.stat().st_uid == 0 and not parent.stat().st_mode & 0o022, parent


def test_operator_commands_in_the_checkout_find_the_stack(closed_stack):
    """`spillway check` and `spillway reconcile`, typed in the checkout with no setting
    of their own, reach the stack's redis, memcached, broker and database: exit 0."""
    _stack, checkout = closed_stack
    for command in (["check"], ["reconcile"]):
        result = subprocess.run(
            [str(checkout / ".venv" / "bin" / "spillway"), *command],
            cwd=checkout,
            env=users_environment(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, (command, result.stdout, result.stderr)


def test_the_first_make_run_says_what_it_does_and_raises_no_alarm(closed_stack):
    """A first `make run` says what it installs, and its start-up screen has no CRIT or
    WARN line (supervisord's "running as root" and "without any HTTP authentication"
    were two: its user and its socket's password are explicit now)."""
    stack, _checkout = closed_stack
    screen = stack.log_path.read_text(errors="replace")
    assert "make: creating the virtualenv" in screen and "make: installing spillway" in screen
    alarms = [line for line in screen.splitlines() if " CRIT " in line or " WARN " in line]
    assert not alarms
