"""The unprivileged account the app processes run as when the stack is started by root."""

import grp
import os
import pwd
import subprocess
from dataclasses import dataclass

from spillway.deploy.layout import StackError

DEFAULT_USER = "spillway"


@dataclass(frozen=True)
class ServiceUser:
    """Who gunicorn, Celery, redis, memcached and nginx's workers run as."""

    name: str
    uid: int
    gid: int
    group: str


def resolve_service_user() -> ServiceUser | None:
    """The account to drop to: None when not root (processes keep the caller's identity).

    :raise StackError: the account cannot be created.
    """
    if os.geteuid() != 0:
        return None
    name = os.environ.get("SPILLWAY_USER", DEFAULT_USER)
    if name == "root":
        raise StackError("SPILLWAY_USER must not be root: the app never runs as root")
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        _create_system_user(name)
        entry = pwd.getpwnam(name)
    return ServiceUser(name, entry.pw_uid, entry.pw_gid, grp.getgrgid(entry.pw_gid).gr_name)


def _create_system_user(name: str) -> None:
    result = subprocess.run(
        [
            "useradd",
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise StackError(f"could not create system user {name!r}: {result.stderr.strip()}")
