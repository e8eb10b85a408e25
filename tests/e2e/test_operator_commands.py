"""The operator's commands, typed beside a running stack with no setting of their own, find
it by themselves (its sockets, database and secrets); `spillway status` shows it at a
glance; outside any stack, or with the stack stopped, they say so in one line.

The stack is `spillway up` in its own run directory, which SPILLWAY_RUN_DIR names, as
`./run` names it for a command typed in the checkout.
"""

import os
import re
import subprocess
import sys

from tests.spillway_up import SUITES_OWN
from tests.spillway_up import beside
from tests.spillway_up import operator


def test_check_reconcile_and_ledger_status_find_the_stack(stack, tmp_path):
    """`spillway check`, `reconcile` and `ledger status` reach the stack's redis,
    memcached, broker and database: exit 0, every dependency ok."""
    check = beside(stack, "check", cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    for name in ("database", "redis", "memcached", "broker"):
        assert re.search(rf"^{name} +ok$", check.stdout, re.MULTILINE), check.stdout
    for command in (["reconcile"], ["ledger", "status"]):
        result = beside(stack, *command, cwd=tmp_path)
        assert result.returncode == 0, (command, result.stdout, result.stderr)


def test_a_command_takes_the_stacks_secrets_and_database(stack, tmp_path):
    """What the stack's processes were given and a command cannot guess (the generated
    admin token and secret key, the database) comes from supervisord.conf, root's."""
    probe = (
        "import os; from spillway.deploy.local_stack import use_stack_addresses; "
        "use_stack_addresses(); "
        "print(os.environ['SPILLWAY_ADMIN_TOKEN'], os.environ['DATABASE_URL'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(SUITES_OWN)},
            "SPILLWAY_RUN_DIR": str(stack.run_dir),
        },
    )
    token, database = result.stdout.split()
    assert f"Bearer {token}" == stack.admin_headers()["Authorization"]
    assert database == f"sqlite:///{stack.paths.database}"


def test_status_shows_programs_queues_outbox_and_urls(stack, tmp_path):
    """`spillway status`: each program RUNNING with its pid (supervisord's) and uptime, the
    Celery queue's depth, the outbox backlog, the URLs of the banner; exit 0."""
    result = beside(stack, "status", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for program in ("nginx", "gunicorn", "celery-worker", "celery-beat", "redis", "memcached"):
        pid = stack.program_pid(program)
        assert re.search(rf"^  {program} +RUNNING +pid {pid} +up \d+[dhms]", out, re.MULTILINE), out
    assert re.search(r"^queue +celery: \d+ task\(s\) waiting$", out, re.MULTILINE), out
    assert re.search(r"^outbox +spillway:outbox: \d+ entr\(ies\)", out, re.MULTILINE), out
    assert f"{stack.base_url}/" in out and f"{stack.base_url}/readyz" in out


def test_outside_any_stack_a_command_says_so_in_one_line(tmp_path):
    """In a directory with no stack and no settings: `status` and `check` say there is none;
    a command that needs the database fails in one line naming DATABASE_URL and the missing
    stack; never a traceback."""
    status = operator("status", cwd=tmp_path)
    assert status.returncode == 1
    assert status.stderr.strip().splitlines() == [
        f"Error: no stack in {tmp_path / 'run'}: `make run` starts one; or set SPILLWAY_RUN_DIR"
    ]
    reconcile = operator("reconcile", cwd=tmp_path)
    assert reconcile.returncode != 0 and "Traceback" not in reconcile.stderr
    [line] = reconcile.stderr.strip().splitlines()
    assert line.startswith("Error: DATABASE_URL=") and "no stack in" in line, line
    check = operator("check", cwd=tmp_path)
    assert check.returncode == 1 and not check.stdout, check.stdout
    assert check.stderr.strip().splitlines() == [
        f"Error: no stack in {tmp_path / 'run'}: `make run` starts one; or set "
        "SPILLWAY_RUN_DIR, or the addresses"
    ]


def test_with_the_stack_stopped_status_says_so(stack, tmp_path):
    """Last: the stack stopped, `status` says the run directory's stack is not running,
    and `check` adds that line to its report (exit 1, no traceback)."""
    assert stack.stop() == 0
    status = beside(stack, "status", cwd=tmp_path)
    assert status.returncode == 1
    assert status.stderr.strip() == (
        f"Error: the stack in {stack.run_dir} is not running: `make run` starts it"
    )
    check = beside(stack, "check", cwd=tmp_path)
    assert check.returncode == 1 and "Traceback" not in check.stdout + check.stderr
    assert check.stderr.strip().endswith("is not running: `make run` starts it")
