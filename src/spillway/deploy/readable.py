"""Where the service user can read what it needs: the run directory and the code it runs.

Started as root, `spillway up` runs the app as the service user, from the checkout's venv
and code. A checkout in a directory closed to other users (root's home is 0700) is one the
service user cannot read, so there `up` gives it what it needs elsewhere, in the checkout's
readable home, ``/var/lib/spillway/<checkout>-<hash>/`` (root's; every directory in it 0755,
every file 0644 or 0755: readable by all, writable by root alone, so the privilege boundary
holds, SECURITY.md):

- ``venv/``: a copy of the venv (its interpreter is the same system Python, linked), with
  the copies below in place of the directories its ``.pth`` files name;
- ``paths/<name>-<hash>/``: a copy of each directory of the processes' ``sys.path`` the
  service user cannot read (the project's ``src/`` an editable install names, the
  ``PYTHONPATH`` of an app of your own), which the processes' ``PYTHONPATH`` then names;
- ``run/``: the run directory, when the default ``./run`` is in the closed checkout
  (``./run`` becomes a link to it, so every command in the checkout finds it).

The copies are kept in step with their sources at every `spillway up` (what changed is
copied again, what was removed is removed).
"""

import fcntl
import hashlib
import json
import os
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import click

from spillway.deploy.boundary import Owners
from spillway.deploy.boundary import refuse_unsafe_parents
from spillway.deploy.files import lstat_or_none
from spillway.deploy.files import write_atomically
from spillway.deploy.layout import StackError
from spillway.deploy.mirror import ensure_directory
from spillway.deploy.mirror import mirror
from spillway.deploy.service_user import ServiceUser

READABLE_HOMES = Path("/var/lib/spillway")
# Run by the system Python as the service user: which of the paths it is given it cannot
# read (a directory also needs x, to be searched; so does the interpreter, to be run).
PROBE = (
    "import json, os, sys\n"
    "python = sys.argv[1]\n"
    "def usable(path):\n"
    "    needs_x = path == python or os.path.isdir(path)\n"
    "    return os.access(path, os.R_OK | (os.X_OK if needs_x else 0))\n"
    "print(json.dumps([path for path in sys.argv[1:] if not usable(path)]))\n"
)
SYS_PATH = "import json, sys; print(json.dumps(sys.path))"


@dataclass(frozen=True)
class Runtime:
    """How the app's processes run: the interpreter, its environment, and as whom."""

    python: str
    environment: dict[str, str]
    user: ServiceUser | None


def readable_home(checkout: Path) -> Path:
    """The checkout's readable home: ``/var/lib/spillway/<its name>-<hash of its path>``."""
    digest = hashlib.sha256(str(checkout).encode()).hexdigest()[:12]
    return READABLE_HOMES / f"{checkout.name or 'root'}-{digest}"


def app_runtime(user: ServiceUser | None, environment: dict[str, str]) -> Runtime:
    """This venv's interpreter and the processes' environment as they are, if the service
    user can read every directory they import from; else the readable copies of them.

    :raise StackError: the service user cannot run the app even so (one line says why).
    """
    runtime = Runtime(sys.executable, environment, user)
    if user is None:
        return runtime
    paths = [path for path in python_path(sys.executable, environment) if os.path.exists(path)]
    closed = closed_to(user, [sys.executable, *paths])
    if closed:
        home = readable_home(Path(sys.prefix).parent)
        runtime = copy_runtime(closed, environment, home, user)
        click.echo(
            f"spillway up: {closed[0]} is closed to the service user {user.name}: it "
            f"runs a copy of what it imports, kept in step, in {home}/"
        )
    check_can_import(user, runtime)
    return runtime


def python_path(python: str, environment: dict[str, str]) -> list[str]:
    """``sys.path`` of ``python`` run as the processes run it (``-P``, from ``/``)."""
    result = subprocess.run(
        [python, "-P", "-c", SYS_PATH],
        env=environment,
        cwd="/",
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise StackError(f"{python} does not run: {last_error_line(result)}")
    return json.loads(result.stdout)


def closed_to(user: ServiceUser, paths: list[str]) -> list[str]:
    """Which of ``paths`` the service user cannot read, asked of the system Python run as it.

    :raise StackError: it cannot run the system Python itself.
    """
    python = sys._base_executable  # the venv's own interpreter: /usr/bin/python3.x
    try:
        result = subprocess.run(
            [python, "-I", "-S", "-c", PROBE, *paths],
            user=user.uid,
            group=user.gid,
            extra_groups=[],
            cwd="/",
            env={"LANG": "C.UTF-8"},
            capture_output=True,
            text=True,
            check=False,
        )
    except PermissionError:
        result = None
    if result is None or result.returncode != 0:
        raise StackError(
            f"the service user {user.name} cannot run {python}: build the venv "
            f"from a Python every user can run (/usr/bin/python3: make run does)"
        )
    return json.loads(result.stdout)


def copy_runtime(
    closed: list[str], environment: dict[str, str], home: Path, user: ServiceUser
) -> Runtime:
    """Copy the venv (when any of it is closed) and each closed directory outside it into
    ``home``; point the copied venv's ``.pth`` files and ``PYTHONPATH`` at the copies."""
    venv = Path(sys.prefix)
    make_home(home, user)
    with locked(home):
        outside = [Path(path) for path in closed if not Path(path).is_relative_to(venv)]
        copies = {str(path): home / "paths" / copy_name(path) for path in outside}
        if outside:
            ensure_directory(home / "paths")
        for source, copy in copies.items():
            mirror(Path(source), copy)
        python = sys.executable
        if len(outside) < len(closed):
            mirror(venv, home / "venv")
            retarget_path_files(home / "venv", copies)
            python = str(home / "venv" / Path(sys.executable).relative_to(venv))
    entries = environment.get("PYTHONPATH", "").split(os.pathsep)
    retargeted = os.pathsep.join(str(copies.get(entry, entry)) for entry in entries if entry)
    return Runtime(
        python, {**environment, **({"PYTHONPATH": retargeted} if retargeted else {})}, user
    )


def copy_name(path: Path) -> str:
    """A copy's directory name: the source's name and a hash of its whole path."""
    return f"{path.name or 'root'}-{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"


def retarget_path_files(venv: Path, copies: dict[str, Path]) -> None:
    """In the copied venv's ``.pth`` files, a line naming a copied directory names its
    copy (an editable install's ``src/``); every other line stays as it is."""
    for path_file in venv.glob("lib/python*/site-packages/*.pth"):
        lines = path_file.read_text().splitlines()
        changed = [str(copies.get(line.strip(), line)) for line in lines]
        if changed != lines:
            write_atomically(path_file, "".join(f"{line}\n" for line in changed), 0o644)


def check_can_import(user: ServiceUser, runtime: Runtime) -> None:
    """Fail early, and clearly, where the service user cannot import the runtime."""
    environment = {"SPILLWAY_ENV": "test", "PYTHONPATH": runtime.environment.get("PYTHONPATH", "")}
    result = subprocess.run(
        [runtime.python, "-P", "-c", "import spillway.wsgi"],
        user=user.uid,
        group=user.gid,
        extra_groups=[],
        cwd="/",
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise StackError(
            f"the service user {user.name} cannot import spillway with "
            f"{runtime.python}: {last_error_line(result)}"
        )


def run_directory(run_dir: Path, chosen: bool, user: ServiceUser | None) -> Path:
    """Where the run directory is: ``run_dir``, if the service user can reach it; for the
    default ``./run`` in a checkout closed to it, ``run/`` in the checkout's readable home,
    which ``./run`` then links to.

    :raise StackError: a run directory the operator chose is closed to the service user,
        or the closed checkout already has a ``./run`` of its own.
    """
    resolved = run_dir.resolve()
    # Its parents must let the service user through; the run directory's own mode is
    # claim()'s to set (a fresh mkdtemp is 0700, and fine).
    if user is None or not closed_to(user, [str(nearest_existing(resolved.parent))]):
        return resolved
    if chosen or run_dir.is_symlink():
        raise StackError(
            f"SPILLWAY_RUN_DIR={run_dir}: the service user {user.name} cannot "
            f"reach it: choose a directory every user can traverse"
        )
    checkout = Path.cwd()
    home_run = readable_home(checkout) / "run"
    if lstat_or_none(run_dir) is not None:
        try:
            run_dir.rmdir()  # an empty directory is nothing to keep
        except OSError:
            raise StackError(
                f"{resolved} is closed to the service user {user.name}; move it where it "
                f"can reach it and link it (mv {resolved} {home_run} && ln -s {home_run} "
                f"{resolved}), or set SPILLWAY_RUN_DIR"
            ) from None
    make_home(home_run.parent, user)
    run_dir.symlink_to(home_run)
    click.echo(
        f"spillway up: {checkout} is closed to the service user {user.name}: the run "
        f"directory is {home_run} (./run links to it)"
    )
    return home_run


def nearest_existing(path: Path) -> Path:
    """``path``, or its nearest ancestor that exists (what must be reachable to make it)."""
    while lstat_or_none(path) is None and path != path.parent:
        path = path.parent
    return path


def make_home(home: Path, user: ServiceUser) -> None:
    """``home`` made root's, 0755, under parents only root can change.

    :raise StackError: the homes' directory is not root's, or the service user could
        change one of its parents.
    """
    ensure_directory(READABLE_HOMES)  # a link there is replaced, never followed
    if READABLE_HOMES.lstat().st_uid != 0:
        raise StackError(f"{READABLE_HOMES} must be root's: remove it, spillway up makes it")
    refuse_unsafe_parents(home, Owners.of(user))
    ensure_directory(home)


@contextmanager
def locked(home: Path):
    """Hold ``home`` for this process alone: two `spillway up` of one checkout never copy
    into it at once."""
    fd = os.open(home.with_suffix(".lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def last_error_line(result: subprocess.CompletedProcess) -> str:
    lines = (result.stderr or result.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit status {result.returncode}"
