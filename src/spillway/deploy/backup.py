"""`spillway backup DIR`: the running stack's ledger, redis's data and its secrets, copied
into DIR with a manifest (spillway/deploy/backup_manifest.py), while the stack serves.

What makes the two copies fit together. Redis holds what the ledger does not yet (live
stock, the outbox of accepted purchases); the outbox's drain is the one writer that moves
state from redis into the database and then deletes it from redis. Every other flow
writes redis first and the database second (a purchase is only a redis write; a sale is
registered in redis before its row commits; a payment is settled in redis before the
ledger records it). So:

1. the drain pauses: the Celery worker is stopped (supervisord waits for its batches to
   commit and acknowledge) — purchases are still accepted, into the outbox;
2. the database is copied (one consistent snapshot: SQLite's online backup, pg_dump);
3. redis is snapshotted (its own replication RDB);
4. the worker starts again and drains what arrived meanwhile.

With the drain paused, nothing leaves redis between the two copies, and anything written
between them is in the redis copy only: redis is at least as new as the database, the
state the stack is built to recover from. After a restore every order accepted before the
snapshot is in the database copy or still in the redis copy's outbox, which the worker
drains (``INSERT … ON CONFLICT DO NOTHING``, so an order in both is stored once), and the
app's reconciliation balances. Database first, then redis, and not the other way round:
redis first would let what is recorded between the two (a payment, a new sale) be in the
database copy and not in redis's: a database newer than its redis, which nothing recovers
from by itself (the app's ledger check refuses a sale redis does not know).
What remains: a sale created in the split second between the two copies can be open in
the redis copy and missing from the database's; the app's ledger check names it at the
next start (`spillway ledger status`, then `adopt`: redis is the newer truth).
"""

import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path

from spillway.deploy import backup_manifest
from spillway.deploy import ledger_copy
from spillway.deploy import redis_copy
from spillway.deploy import replication
from spillway.deploy import supervisor_rpc
from spillway.deploy.files import read_regular
from spillway.deploy.files import write_atomically
from spillway.deploy.layout import StackError
from spillway.deploy.local_stack import is_running
from spillway.deploy.run_dir import RunDir

# The program that drains the outbox into the database (the app's Celery worker).
DRAIN_PROGRAM = "celery-worker"


def take_backup(run_dir: RunDir, target: Path, database_url: str) -> backup_manifest.Manifest:
    """Back up the running stack of ``run_dir`` (its ledger at ``database_url``) into
    ``target``, a directory that must not exist or be empty; made whole or not at all.

    :raise StackError: no stack runs there, ``target`` holds something, a copy failed.
    :raise supervisor_rpc.SupervisorUnreachable: the worker could not be paused.
    """
    kind = ledger_copy.kind_of(database_url)
    if not is_running(run_dir):
        raise StackError(
            f"no stack is running in {run_dir.root}: a backup is taken from the running "
            "stack (start it with `spillway up`)"
        )
    target = target.resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise StackError(f"{target} exists and is not an empty directory: choose a new one")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial-{secrets.token_hex(4)}")
    partial.mkdir(mode=0o700)
    try:
        with drain_paused(run_dir):
            ledger_copy.dump(database_url, partial / backup_manifest.DATABASE_FILES[kind])
            replicated = replication.load(run_dir)
            redis_copy.snapshot(
                run_dir.redis_socket,
                partial / backup_manifest.REDIS_FILE,
                replicated.password if replicated else None,
            )
        stack_secrets = read_regular(run_dir.secrets_file)
        if stack_secrets is not None:
            write_atomically(partial / backup_manifest.SECRETS_FILE, stack_secrets, 0o600)
        manifest = backup_manifest.write(partial, run_dir.root, kind)
        os.rename(partial, target)  # over an empty directory too: the backup appears whole
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return manifest


@contextmanager
def drain_paused(run_dir: RunDir):
    """The drain stopped for the length of the block, started again after it (if it was
    running: a worker the operator stopped stays stopped)."""
    running = any(
        info["name"] == DRAIN_PROGRAM and info["statename"] == "RUNNING"
        for info in supervisor_rpc.programs(run_dir)
    )
    if running:
        supervisor_rpc.stop(run_dir, DRAIN_PROGRAM)
    try:
        yield
    finally:
        if running:
            supervisor_rpc.start(run_dir, DRAIN_PROGRAM)
