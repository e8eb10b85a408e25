"""The start-up audit of a gevent worker: a client library that does its I/O in C, out of
gevent's sight, blocks the hub — every request of the worker — for each call it makes.
Patching the standard library cannot reach it. Found only under load in production by
many (canonical/ubuntu.com #11211, cisagov/manage.get.gov #5153, dimagi/commcare-hq #7706),
so it is judged here, once the app is imported and before the worker serves:

- a known blocking driver imported unpatched stops the worker with one line naming the
  module and the cure (:data:`BLOCKING`);
- a C-extension client the audit cannot judge is one warning each (:data:`UNJUDGED`).
"""

import logging
import sys

from spillway.logs import refuse_to_start

log = logging.getLogger(__name__)


def _psycopg2() -> str | None:
    extensions = sys.modules.get("psycopg2.extensions")
    if extensions is not None and extensions.get_wait_callback() is not None:
        return None  # psycogreen (or an equivalent) made it wait through the hub
    return (
        "psycopg2 is imported with no wait callback, so every query blocks the hub: "
        "call psycogreen.gevent.patch_psycopg() before the app connects, or use "
        "psycopg 3 (postgresql+psycopg://)"
    )


def _psycopg3() -> str | None:
    from packaging.version import Version

    version = getattr(sys.modules["psycopg"], "__version__", "0")
    if Version(version) >= Version("3.1.14"):
        return None
    return (
        f"psycopg {version} waits on its sockets outside gevent's patched selectors: "
        "upgrade to psycopg 3.1.14 or later"
    )


def _always(message: str):
    return lambda: message


# Module → a judge: None when the module cooperates, else what is wrong and the cure.
BLOCKING = {
    "psycopg2": _psycopg2,
    "psycopg": _psycopg3,
    "pylibmc": _always(
        "pylibmc (libmemcached, in C) blocks the hub on every call: use "
        "pymemcache, the runtime's own memcached client"
    ),
    "MySQLdb": _always(
        "MySQLdb (mysqlclient, in C) blocks the hub on every query: use "
        "PyMySQL (mysql+pymysql://), whose sockets gevent patches"
    ),
}
# C-extension clients that may or may not cooperate, depending on how they are set up.
UNJUDGED = {
    "grpc": "call grpc.experimental.gevent.init_gevent() before any channel is made",
    "zmq": "use zmq.green, not zmq, in a gevent worker",
    "confluent_kafka": "librdkafka's calls block: keep them short (poll(0)) or off the hub",
    "pyodbc": "ODBC drivers block the hub on every query",
    "pymssql": "FreeTDS blocks the hub on every query: prefer a pure-Python driver",
    "cx_Oracle": "use python-oracledb in thin mode (pure Python)",
    "ldap": "python-ldap blocks the hub on every call: prefer ldap3 (pure Python)",
    "pycurl": "libcurl blocks the hub: prefer requests, whose sockets gevent patches",
}


def findings() -> tuple[list[str], list[str]]:
    """(refusals, warnings) for the modules imported in this process now."""
    refusals = [
        problem for name, judge in BLOCKING.items() if name in sys.modules and (problem := judge())
    ]
    warnings = [
        f"{name} is a C client this audit cannot judge: {advice}; "
        "spillway_hub_blocks will show whether it blocks"
        for name, advice in UNJUDGED.items()
        if name in sys.modules
    ]
    return refusals, warnings


def refuse_blocking_drivers(who: str) -> None:
    """Log each warning; stop with one line at the first refusal.

    :raise SystemExit: a known blocking driver is imported unpatched.
    """
    refusals, warnings = findings()
    for warning in warnings:
        log.warning("%s: %s", who, warning)
    if refusals:
        refuse_to_start(log, who, refusals[0])
