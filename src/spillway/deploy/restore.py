"""`spillway restore DIR`: a backup (spillway/deploy/backup.py) put into a fresh run
directory, for `spillway up` to start on; the app's `spillway reconcile` then checks it.

Refused, with nothing changed, when DIR is not a backup this version restores (its
manifest missing, of another version, a file damaged), when the run directory's stack is
running (a restore never replaces the data under live processes: stop it first), and
when the run directory or the database already holds data (a restore never overwrites:
move it aside, or give an empty database). The run directory is laid out as `spillway up`
lays it out (spillway/deploy/boundary.py): the database file and redis's AOF are the
service user's, the secrets root's (0600).
"""

import shutil
from pathlib import Path

from spillway.deploy import backup_manifest
from spillway.deploy import ledger_copy
from spillway.deploy import redis_copy
from spillway.deploy.boundary import claim
from spillway.deploy.files import read_regular
from spillway.deploy.files import write_atomically
from spillway.deploy.layout import StackError
from spillway.deploy.local_stack import is_running
from spillway.deploy.readable import run_directory
from spillway.deploy.run_dir import RunDir
from spillway.deploy.service_user import resolve_service_user


def restore_backup(
    source: Path, run_dir: Path, chosen: bool, database_url: str
) -> tuple[backup_manifest.Manifest, RunDir]:
    """Restore the backup in ``source`` into ``run_dir`` (``chosen``: named by the
    operator, as for `spillway up`) and the ledger at ``database_url``.

    :raise backup_manifest.NotABackup: ``source`` is not a backup this version restores.
    :raise StackError: the stack there runs, the place already holds data, a load failed.
    """
    manifest = backup_manifest.read(source)
    kind = ledger_copy.kind_of(database_url)
    if kind != manifest.ledger:
        raise StackError(
            f"{source} holds a {manifest.ledger} ledger, and DATABASE_URL names a {kind} "
            f"one: restore it into a {manifest.ledger} database"
        )
    user = resolve_service_user()
    refuse_a_running_stack(RunDir(run_dir.resolve()))
    # Where `spillway up` will run it (a closed checkout's ./run links elsewhere).
    place = RunDir(run_directory(run_dir, chosen, user))
    refuse_a_running_stack(place)
    held = [what for what in (ledger_copy.holds_data(database_url), redis_data(place)) if what]
    if held:
        raise StackError(
            f"{place.root} already holds data ({'; '.join(held)}): restore into a fresh "
            "run directory (and an empty database), or move it aside first"
        )
    claim(place, user, move_legacy_database=False)
    owner = (user.uid, user.gid) if user else None
    redis_copy.load_as_aof(source / backup_manifest.REDIS_FILE, place.redis_data, user)
    try:
        ledger_copy.load(database_url, source / manifest.database_file, owner)
    except BaseException:
        shutil.rmtree(place.redis_data / "appendonlydir", ignore_errors=True)
        raise
    if backup_manifest.SECRETS_FILE in manifest.files:
        stack_secrets = read_regular(source / backup_manifest.SECRETS_FILE) or ""
        write_atomically(place.secrets_file, stack_secrets, 0o600)
    return manifest, place


def refuse_a_running_stack(place: RunDir) -> None:
    if is_running(place):
        raise StackError(
            f"the stack in {place.root} is running: stop it first (a restore never "
            "replaces the data of a running stack)"
        )


def redis_data(place: RunDir) -> str | None:
    """What redis already keeps in the run directory, or None."""
    if not place.redis_data.is_dir():
        return None
    kept = sorted(entry.name for entry in place.redis_data.iterdir())
    return f"{place.redis_data} holds {', '.join(kept)}" if kept else None
