"""Redis's data out of a running stack and back into a run directory.

Out: ``redis-cli --rdb``, redis's own replication snapshot (the server forks and streams
an RDB of one instant), so nothing in the service user's redis directory is read or
written by root and the copy is whole even while purchases keep arriving.

Back: the stack's redis runs with ``appendonly yes``, and redis started on an AOF ignores
an RDB beside it. So a private redis loads the RDB without AOF, is told ``CONFIG SET
appendonly yes`` (which writes the AOF directory from what it holds, as redis itself
does), and stops; the run directory's redis then starts from that AOF.
"""

import os
import shutil
import subprocess
import time
from pathlib import Path

import redis

from spillway.deploy.files import copy_as_new
from spillway.deploy.layout import SEARCH_PATH
from spillway.deploy.layout import StackError
from spillway.deploy.layout import find_system_binaries
from spillway.deploy.service_user import ServiceUser

SNAPSHOT_SECONDS = 600
LOAD_SECONDS = 120
# What the private redis loads from: beside the AOF it writes, removed afterwards.
RESTORE_RDB = "restore.rdb"
RESTORE_SOCKET = "restore.sock"


def snapshot(socket: Path, target: Path, password: str | None = None) -> None:
    """An RDB of the redis at ``socket`` (asking with ``password``, given one: --redis
    sentinel's; a replica's copy is as good), written to ``target``.

    :raise StackError: redis-cli is missing, or redis would not give a snapshot.
    """
    cli = shutil.which("redis-cli", path=SEARCH_PATH)
    if cli is None:
        raise StackError("redis-cli is not installed (apt-get install redis-tools)")
    result = subprocess.run(
        [cli, "-s", str(socket), "--rdb", str(target)],
        capture_output=True,
        text=True,
        timeout=SNAPSHOT_SECONDS,
        check=False,
        # redis-cli's own way to take a password off its command line.
        env={**os.environ, "REDISCLI_AUTH": password} if password else None,
    )
    if result.returncode != 0 or not target.is_file():
        said = " ".join((result.stderr or result.stdout).split()) or f"exit {result.returncode}"
        raise StackError(f"redis at {socket} gave no snapshot: {said}")


def load_as_aof(rdb: Path, directory: Path, user: ServiceUser | None) -> None:
    """Turn ``rdb`` into the AOF of a redis whose ``dir`` is ``directory`` (the run
    directory's redis directory, empty but for nothing), as ``user`` when root.

    :raise StackError: redis could not load the snapshot or write its AOF.
    """
    loaded = directory / RESTORE_RDB
    copy_as_new(rdb, loaded, 0o600, (user.uid, user.gid) if user else None)
    socket = directory / RESTORE_SOCKET
    ids = {"user": user.uid, "group": user.gid, "extra_groups": []} if user else {}
    server = subprocess.Popen(
        [
            find_system_binaries()["redis_server"],
            *("--port", "0", "--unixsocket", str(socket), "--dir", str(directory)),
            *("--dbfilename", RESTORE_RDB, "--appendonly", "no", "--save", ""),
        ],
        cwd="/",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        text=True,
        **ids,
    )
    client = redis.Redis(unix_socket_path=str(socket), socket_timeout=30)
    try:
        _wait(lambda: client.ping(), server, "load the snapshot")
        client.config_set("appendonly", "yes")
        _wait(lambda: _aof_written(client), server, "write its AOF")
        client.shutdown(nosave=True)
    except redis.exceptions.ConnectionError:
        pass  # SHUTDOWN answers by closing the connection
    finally:
        client.close()
        try:
            server.wait(timeout=LOAD_SECONDS)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        loaded.unlink(missing_ok=True)
        socket.unlink(missing_ok=True)
    if not (directory / "appendonlydir").is_dir():
        raise StackError(f"redis wrote no AOF into {directory}: {_said(server)}")


def _aof_written(client: redis.Redis) -> bool:
    info = client.info("persistence")
    if info.get("aof_last_bgrewrite_status") == "err":
        raise StackError("redis could not write the AOF of the restored snapshot")
    return (
        info.get("aof_enabled") == 1
        and info.get("aof_rewrite_in_progress") == 0
        and info.get("aof_rewrite_scheduled") == 0
    )


def _wait(ready, server: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + LOAD_SECONDS
    while True:
        try:
            if ready():
                return
        except (redis.exceptions.ConnectionError, redis.exceptions.BusyLoadingError):
            pass
        except FileNotFoundError:
            pass
        if server.poll() is not None:
            raise StackError(f"redis could not {what}: {_said(server)}")
        if time.monotonic() > deadline:
            raise StackError(f"redis did not {what} within {LOAD_SECONDS:g} s")
        time.sleep(0.1)


def _said(server: subprocess.Popen) -> str:
    """redis's last log line (it exited)."""
    if server.poll() is None or server.stdout is None:
        return "still running"
    lines = [line.strip() for line in server.stdout.read().splitlines() if line.strip()]
    return lines[-1] if lines else f"exit {server.returncode}"
