"""`spillway reload`: new code and configuration live without a refused or failed request.

`spillway up` does the reload itself, on SIGHUP, since it holds what the stack was started
with (its options, its environment, the service user). First what it does before a start,
again: the copies of the code the service user runs are brought in step, the app is asked
what it declares (as the service user: new code that does not import stops here), the
configs are rendered, the migrations and the start checks run. Any of that failing, the
configs are put back and nothing is signalled. Then each program takes the new code the
way that drops no request:

- gunicorn: HUP to its master (by supervisord's pid for it). The master keeps its pid and
  the listening socket; it forks new workers, which import the app afresh (it runs without
  --preload), and stops the old ones gracefully: each finishes what it holds, for up to
  --graceful-timeout. A live-stock stream still open then is cut, which the browser's
  EventSource opens again by itself. Connections that arrive meanwhile wait in the
  socket's backlog for a new worker.
- nginx, when what it reads changed since it last loaded it (nginx.conf: the app declares
  other cached routes or pages; a renewed TLS certificate): HUP to its master (`nginx -s
  reload`): new workers on the new config; the old ones finish their requests, then
  close their idle keep-alive connections, which races with a client sending its next
  request on one (HTTP lets it retry an idempotent request on a new connection; browsers
  do). Nothing changed, nginx is not reloaded: no race.
- the Celery worker, beat and Flower: restarted by supervisord; the worker stops with
  Celery's warm shutdown (SIGTERM: it finishes its tasks, for up to stopwaitsecs). The
  purchases accepted meanwhile wait in the redis outbox.

The command finds `spillway up` by the pid it keeps in the run directory, which must be
supervisord's parent, signals it and waits for the result it writes there.
"""

import hashlib
import json
import os
import re
import signal
import threading
import time
import xmlrpc.client
from collections.abc import Callable
from pathlib import Path

import click

from spillway.deploy import supervisor_rpc
from spillway.deploy.files import read_regular
from spillway.deploy.files import write_atomically
from spillway.deploy.layout import StackError
from spillway.deploy.run_dir import RunDir
from spillway.settings import SettingsError

# Programs that run the app's code and are restarted (gunicorn and nginx are signalled).
RESTARTED = ("celery-worker", "celery-beat", "flower")
# The old workers' graceful timeout (10 s in supervisord.conf) and a new worker's boot.
GUNICORN_RENEWAL_SECONDS = 120.0
POLL_SECONDS = 0.2
# The files nginx.conf names that nginx reads at each (re)load: the TLS certificate and key.
NGINX_FILE = re.compile(r'^\s*ssl_certificate(?:_key)?\s+"?([^";\s]+)"?\s*;', re.MULTILINE)


class ReloadFailed(RuntimeError):
    """The reload was refused or failed; the message says why in one line."""


# -- the command's side


def request_reload(run_dir: RunDir, timeout: float) -> str:
    """Ask the stack's `spillway up` to reload; the line it answers with once done.

    :raise ReloadFailed: no stack runs there, or the reload failed or did not finish.
    """
    pid = up_process(run_dir)
    asked = time.time()
    try:
        os.kill(pid, signal.SIGHUP)
    except PermissionError:
        raise ReloadFailed(
            f"spillway up (pid {pid}) is another user's: reload as the user who started it"
        ) from None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = last_result(run_dir)
        if result and result["started"] >= asked and "ok" in result:
            if not result["ok"]:
                raise ReloadFailed(f"reload failed, nothing reloaded: {result['line']}")
            return result["line"]
        if not alive(pid):
            raise ReloadFailed(f"spillway up (pid {pid}) exited during the reload")
        time.sleep(POLL_SECONDS)
    raise ReloadFailed(
        f"spillway up (pid {pid}) has not finished the reload after {timeout:g}s; "
        f"its output says where it is"
    )


def up_process(run_dir: RunDir) -> int:
    """The pid of the `spillway up` that runs the stack of ``run_dir``.

    :raise ReloadFailed: none runs it (or the pid it left is not supervisord's parent).
    """
    up = (read_regular(run_dir.up_pid) or "").strip()
    supervisord = (read_regular(run_dir.supervisord_pid) or "").strip()
    if not (up.isdigit() and supervisord.isdigit() and alive(int(supervisord))):
        raise ReloadFailed(f"no stack runs in {run_dir.root}: `make run` (spillway up) starts one")
    if parent_of(int(supervisord)) != int(up):
        raise ReloadFailed(
            f"the supervisord of {run_dir.root} (pid {supervisord}) has lost its spillway "
            f"up: stop it and start the stack again"
        )
    return int(up)


def parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # after the command name, which may hold ")"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def last_result(run_dir: RunDir) -> dict | None:
    try:
        return json.loads(read_regular(run_dir.reload_result) or "null")
    except ValueError:
        return None


# -- `spillway up`'s side


class Reloader:
    """Reloads the stack when asked, one reload at a time, in a thread of `spillway up`.

    :param reconfigure: renders the configs again and migrates (StackError if it cannot).
    :param ready: waits until the stack answers /readyz; False if it does not.
    """

    def __init__(self, run_dir: RunDir, reconfigure: Callable[[], None], ready: Callable[[], bool]):
        self.run_dir = run_dir
        self.reconfigure = reconfigure
        self.ready = ready
        self._wanted = threading.Event()
        self._nginx_loaded = nginx_inputs(run_dir)  # made before supervisord starts nginx

    def request(self) -> None:
        """Ask for a reload (safe in a signal handler: it only sets an event). Asked during
        a reload, another follows it: what changed meanwhile goes live too."""
        self._wanted.set()

    def start(self) -> None:
        """Serve the requests from now on (once the stack is up: one made earlier waits)."""
        threading.Thread(target=self._serve, name="reloader", daemon=True).start()

    def _serve(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            started = time.time()
            self._write({"started": started})
            click.echo("spillway up: reloading")
            try:
                line, self._nginx_loaded = reload_stack(
                    self.run_dir, self.reconfigure, self.ready, self._nginx_loaded
                )
                ok = True
            except (ReloadFailed, StackError, SettingsError) as exc:
                line, ok = str(exc), False
            except supervisor_rpc.SupervisorUnreachable as exc:
                line, ok = str(exc), False
            except Exception as exc:  # never a dead reloader and a command left waiting
                line, ok = f"{type(exc).__name__}: {exc}", False
            self._write({"started": started, "ok": ok, "line": line})
            click.echo(f"spillway up: {line}" if ok else f"spillway up: reload failed: {line}")

    def _write(self, result: dict) -> None:
        write_atomically(self.run_dir.reload_result, json.dumps(result) + "\n", 0o644)


def reload_stack(
    run_dir: RunDir, reconfigure: Callable[[], None], ready: Callable[[], bool], nginx_loaded: str
) -> tuple[str, str]:
    """Configure again, then each program onto the new code; what was done, in a line, and
    the digest of what nginx has loaded now (``nginx_loaded``: what it had).

    :raise StackError: configuring failed: the configs are as they were, nothing signalled.
    :raise ReloadFailed: a program did not take the new code.
    """
    rendered = snapshot(run_dir)
    try:
        reconfigure()
    except BaseException:
        restore(rendered)
        raise
    running = {info["name"] for info in supervisor_rpc.programs(run_dir) if info["pid"]}
    done = [renew_gunicorn(run_dir)]
    nginx_now = nginx_inputs(run_dir)
    if nginx_now != nginx_loaded:
        signal_program(run_dir, "nginx", "HUP")
        done.append("nginx reloaded (its config or certificate changed)")
    else:
        done.append("nginx unchanged")
    for name in RESTARTED:
        if name in running:
            restart_program(run_dir, name)
            done.append(f"{name} restarted")
    if not ready():
        raise ReloadFailed("reloaded, but /readyz does not answer 200: it says what is down")
    return "reloaded: " + ", ".join(done), nginx_now


def nginx_inputs(run_dir: RunDir) -> str:
    """A digest of what nginx reads when it loads: nginx.conf and the files it names."""
    digest = hashlib.sha256()
    conf = read_regular(run_dir.nginx_conf) or ""
    digest.update(conf.encode())
    for name in NGINX_FILE.findall(conf):
        try:
            content = Path(name).read_bytes()
        except OSError:
            content = b"missing"
        digest.update(b"\0" + name.encode() + b"\0" + content)
    return digest.hexdigest()


def snapshot(run_dir: RunDir) -> dict[Path, tuple[str, int]]:
    """The rendered configs as they are (text and mode), to put back if configuring fails."""
    kept = {}
    for path in (
        run_dir.nginx_conf,
        run_dir.supervisord_conf,
        run_dir.redis_conf,
        run_dir.replica_conf,
    ):
        text = read_regular(path)
        if text is not None:
            kept[path] = (text, path.stat().st_mode & 0o777)
    return kept


def restore(kept: dict[Path, tuple[str, int]]) -> None:
    for path, (text, mode) in kept.items():
        write_atomically(path, text, mode)


def renew_gunicorn(run_dir: RunDir, timeout: float = GUNICORN_RENEWAL_SECONDS) -> str:
    """HUP to gunicorn's master, then wait until none of its old workers is left.

    :raise ReloadFailed: gunicorn is not running, or old workers outlived ``timeout``.
    """
    master = program_pid(run_dir, "gunicorn")
    old = set(children_of(master))
    signal_program(run_dir, "gunicorn", "HUP")
    deadline = time.monotonic() + timeout
    while True:
        workers = set(children_of(master))
        if workers and not workers & old:
            return f"gunicorn's {len(old)} workers renewed (master {master} kept)"
        if time.monotonic() > deadline or not alive(master):
            raise ReloadFailed(
                f"gunicorn (pid {master}) still has old workers {sorted(workers & old)} "
                f"after {timeout:g}s; its log says why"
            )
        time.sleep(POLL_SECONDS)


def program_pid(run_dir: RunDir, name: str) -> int:
    """supervisord's pid of ``name``, which must be running.

    :raise ReloadFailed: it is not.
    """
    info = call(run_dir, "getProcessInfo", name)
    if info["statename"] != "RUNNING":
        raise ReloadFailed(f"{name} is {info['statename']}, not running: nothing reloaded")
    return info["pid"]


def signal_program(run_dir: RunDir, name: str, signal_name: str) -> None:
    call(run_dir, "signalProcess", name, signal_name)


def restart_program(run_dir: RunDir, name: str) -> None:
    """supervisord's stop (its stopsignal, TERM, and stopwaitsecs), then its start."""
    call(run_dir, "stopProcess", name, True)
    call(run_dir, "startProcess", name, True)


def call(run_dir: RunDir, method: str, *args):
    """:raise ReloadFailed: supervisord refused (naming the program and why)."""
    try:
        return supervisor_rpc.call(run_dir, method, *args)
    except xmlrpc.client.Fault as fault:
        raise ReloadFailed(f"supervisord: {method}{args}: {fault.faultString}") from None


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (a gunicorn master's: its workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and parent_of(int(entry.name)) == pid:
            found.append(int(entry.name))
    return found
