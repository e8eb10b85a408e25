"""The stack's supervisord, asked over its socket: each program's state, pid and uptime.

The socket is root's (0700) and asks for the user and password `spillway up` wrote into
supervisord.conf's ``[supervisorctl]`` section (root's, 0600): whoever can read that file
is whoever may command supervisord.
"""

import configparser
import xmlrpc.client

from supervisor.xmlrpc import SupervisorTransport

from spillway.deploy.files import read_regular
from spillway.deploy.run_dir import RunDir

# supervisord's states a program never leaves by itself: it gave up starting it.
GAVE_UP = {"FATAL"}


class SupervisorUnreachable(RuntimeError):
    """supervisord does not answer on the run directory's socket (not running, or not
    ours to ask)."""


def programs(run_dir: RunDir) -> list[dict]:
    """supervisord's ``getAllProcessInfo``: name, statename, pid, start, now, description…

    :raise SupervisorUnreachable: it does not answer.
    """
    return call(run_dir, "getAllProcessInfo")


def stop(run_dir: RunDir, name: str) -> None:
    """Stop program ``name`` and wait until it has exited (its stopwaitsecs at most).

    :raise SupervisorUnreachable: supervisord does not answer, or refused.
    """
    _refusal_as_unreachable(run_dir, "stopProcess", name, True)


def start(run_dir: RunDir, name: str) -> None:
    """Start program ``name`` and wait until supervisord counts it running.

    :raise SupervisorUnreachable: supervisord does not answer, or refused.
    """
    _refusal_as_unreachable(run_dir, "startProcess", name, True)


def _refusal_as_unreachable(run_dir: RunDir, method: str, *args):
    try:
        return call(run_dir, method, *args)
    except xmlrpc.client.Fault as fault:
        raise SupervisorUnreachable(f"supervisord refused {method}: {fault.faultString}") from None


def call(run_dir: RunDir, method: str, *args):
    """supervisord's ``supervisor.<method>(*args)`` (``signalProcess``, ``stopProcess``…).

    :raise SupervisorUnreachable: it does not answer.
    :raise xmlrpc.client.Fault: it answered with a fault (no such process, not running…).
    """
    config = configparser.ConfigParser(interpolation=None)
    config.read_string(read_regular(run_dir.supervisord_conf) or "")
    section = config["supervisorctl"] if config.has_section("supervisorctl") else {}
    transport = SupervisorTransport(
        section.get("username"), section.get("password"), f"unix://{run_dir.supervisor_socket}"
    )
    proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)
    try:
        return getattr(proxy.supervisor, method)(*args)
    except xmlrpc.client.Fault:
        raise
    except (OSError, xmlrpc.client.Error) as exc:
        raise SupervisorUnreachable(
            f"supervisord does not answer on {run_dir.supervisor_socket}: {exc}"
        ) from None


def gave_up_on(run_dir: RunDir) -> list[dict]:
    """The programs supervisord stopped trying to start; [] if it cannot be asked yet."""
    try:
        return [info for info in programs(run_dir) if info["statename"] in GAVE_UP]
    except SupervisorUnreachable:
        return []
