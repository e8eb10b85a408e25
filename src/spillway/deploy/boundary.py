"""The privilege boundary in the run directory: what root reads or writes is root's, and
the service user owns only the directories it writes in.

`spillway up` calls :func:`claim` before it writes or starts anything. It also takes back
a run directory an older layout gave to the service user, without following a link the
service user may have planted there: symlinks, hard-linked names and anything else where
a root file belongs are unlinked; a root-owned directory is taken with fchown/fchmod on a
descriptor opened with O_NOFOLLOW; the service user's old logs become root's, kept; what
else it owned directly in the run directory moves into a closed quarantine directory.
Root never opens, chowns or writes anything inside the service user's directories,
except the database file it moves there from an older layout.
"""

import os
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import click

from spillway.deploy.files import is_single_regular_file
from spillway.deploy.files import lstat_or_none
from spillway.deploy.layout import StackError
from spillway.deploy.run_dir import DATABASE_SUFFIXES
from spillway.deploy.run_dir import NGINX_TEMP_NAMES
from spillway.deploy.run_dir import RunDir
from spillway.deploy.service_user import ServiceUser

OPEN_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True)
class Owners:
    """Who owns the run directory's paths, and how open each kind of path is."""

    root_uid: int
    root_gid: int
    service_uid: int
    service_gid: int
    # Started as root: the service user (nginx's workers, the app) must traverse run/.
    shared: bool

    @classmethod
    def of(cls, user: ServiceUser | None) -> "Owners":
        uid, gid = os.geteuid(), os.getegid()
        if user is None:  # not root: everything is the caller's
            return cls(uid, gid, uid, gid, shared=False)
        return cls(uid, gid, user.uid, user.gid, shared=True)

    def mode(self, shared_mode: int) -> int:
        """``shared_mode`` when a service user exists; else owner-only (0700 / 0600)."""
        if self.shared:
            return shared_mode
        return 0o700 if shared_mode & 0o100 else 0o600


def claim(run_dir: RunDir, user: ServiceUser | None, move_legacy_database: bool) -> None:
    """Create or take back the run directory's layout, reset the metrics directory and
    move an older layout's SQLite database into the data directory.

    :raise StackError: the run directory cannot be made safe (the message says why).
    """
    owners = Owners.of(user)
    try:
        _claim(run_dir, owners, move_legacy_database)
    except OSError as exc:
        raise StackError(f"cannot prepare the run directory {run_dir.root}: {exc}") from None


def _claim(run_dir: RunDir, owners: Owners, move_legacy_database: bool) -> None:
    if owners.shared:
        refuse_unsafe_parents(run_dir.root, owners)
    run_dir.root.mkdir(parents=True, exist_ok=True)
    # First the directory itself: once it is root's, nothing in it can be renamed,
    # replaced or added by the service user while the rest is taken back.
    take_directory(run_dir.root, owners.root_uid, owners.service_gid, owners.mode(0o750))
    for path, mode in root_file_modes(run_dir, owners).items():
        take_root_file(path, owners.root_uid, owners.root_gid, mode)
    take_directory(run_dir.logs, owners.root_uid, owners.root_gid, owners.mode(0o750))
    take_log_files(run_dir.logs, owners)
    take_directory(run_dir.nginx_temp, owners.root_uid, owners.service_gid, owners.mode(0o750))
    take_directory(run_dir.tls, owners.root_uid, owners.root_gid, 0o700)
    for name in NGINX_TEMP_NAMES:
        remove_unless_directory(run_dir.nginx_temp_path(name))
    remove_tree(run_dir.metrics)  # a previous run's files would be summed into this one's
    for path, mode in service_directories(run_dir, owners):
        take_directory(path, owners.service_uid, owners.service_gid, mode)
    for path in run_dir.legacy_leftovers:
        remove_unless_directory(path)
    if move_legacy_database:
        move_database(run_dir, owners)
    if owners.shared:
        quarantine_service_files(run_dir, owners)


def root_file_modes(run_dir: RunDir, owners: Owners) -> dict[Path, int]:
    """Files root writes or reads, with their modes (redis, as the service user, reads
    redis.conf; supervisord.conf and secrets.env hold the secrets)."""
    return {
        run_dir.supervisord_conf: 0o600,
        run_dir.secrets_file: 0o600,
        run_dir.nginx_conf: owners.mode(0o644),
        run_dir.redis_conf: owners.mode(0o644),
        run_dir.replica_conf: owners.mode(0o644),
        run_dir.replication_file: 0o600,
        run_dir.nginx_pid: owners.mode(0o644),
        run_dir.supervisord_pid: owners.mode(0o644),
        run_dir.supervisor_socket: 0o700,
    }


def service_directories(run_dir: RunDir, owners: Owners) -> list[tuple[Path, int]]:
    """The directories the service user writes in, with their modes (nginx's workers,
    the service user too, reach gunicorn and memcached through sockets/)."""
    return [
        (run_dir.data, 0o700),
        (run_dir.redis_data, 0o700),
        (run_dir.replica_data, 0o700),
        (run_dir.sentinel_data, 0o700),
        (run_dir.metrics, 0o700),
        (run_dir.sockets, owners.mode(0o750)),
    ]


def refuse_unsafe_parents(root: Path, owners: Owners) -> None:
    """Whoever may rename an ancestor may swap the whole run directory for their own.

    :raise StackError: an ancestor is the service user's or writable by it.
    """
    for parent in root.parents:
        info = parent.lstat()
        sticky = info.st_mode & stat.S_ISVTX
        writable_by_group = info.st_mode & stat.S_IWGRP and info.st_gid == owners.service_gid
        writable_by_others = info.st_mode & stat.S_IWOTH
        if info.st_uid == owners.service_uid or (
            not sticky and (writable_by_group or writable_by_others)
        ):
            raise StackError(
                f"{parent} can be changed by the service user, who could then replace the "
                f"run directory {root}: choose a run directory whose parents only root "
                f"can change"
            )


def take_directory(path: Path, uid: int, gid: int, mode: int) -> None:
    """Make ``path`` a real directory owned by ``uid:gid`` with ``mode``: a link there is
    unlinked and replaced; the directory is changed through a descriptor, never a name."""
    info = lstat_or_none(path)
    if info is not None and not stat.S_ISDIR(info.st_mode):
        if not stat.S_ISLNK(info.st_mode):
            raise StackError(f"{path} should be a directory: move it out of the way")
        path.unlink()
        info = None
    if info is None:
        path.mkdir(mode=0o700)
    fd = os.open(path, OPEN_DIRECTORY)
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def take_root_file(path: Path, uid: int, gid: int, mode: int) -> None:
    """Keep a regular, single-named file as root's (its content kept: the secrets, a log);
    unlink anything else (a symlink, a hard link, a fifo, the service user's socket)."""
    info = lstat_or_none(path)
    if info is None:
        return
    if stat.S_ISSOCK(info.st_mode) and info.st_uid == uid:
        return  # supervisord's own socket from a previous run: supervisord replaces it
    if not is_single_regular_file(info):
        path.unlink()
        return
    fd = os.open(path, OPEN_FILE)
    try:
        if not is_single_regular_file(os.fstat(fd)):
            raise StackError(f"{path} changed while it was being taken back")
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def take_log_files(logs: Path, owners: Owners) -> None:
    """Old logs are kept, as root's; anything else in the logs directory is removed."""
    for entry in os.scandir(logs):
        path = Path(entry.path)
        info = entry.stat(follow_symlinks=False)
        if is_single_regular_file(info):
            take_root_file(path, owners.root_uid, owners.root_gid, owners.mode(0o640))
        elif stat.S_ISDIR(info.st_mode):
            remove_tree(path)
        else:
            path.unlink()


def remove_unless_directory(path: Path) -> None:
    """Unlink whatever is at ``path`` unless it is a real directory (a link is unlinked,
    never followed; a directory is left alone)."""
    info = lstat_or_none(path)
    if info is None or stat.S_ISDIR(info.st_mode):
        return
    path.unlink()


def remove_tree(path: Path) -> None:
    """Remove a directory tree without following a link inside it (shutil's fd-based
    rmtree); a link at ``path`` itself is unlinked."""
    info = lstat_or_none(path)
    if info is None:
        return
    if not stat.S_ISDIR(info.st_mode):
        path.unlink()
        return
    if not shutil.rmtree.avoids_symlink_attacks:
        raise StackError(
            f"this platform's shutil.rmtree can follow links: refusing to remove {path} as root"
        )
    shutil.rmtree(path)


def move_database(run_dir: RunDir, owners: Owners) -> None:
    """An older layout kept the SQLite database (and its -wal/-shm) in the run directory
    itself: move it into the data directory, the service user's.

    :raise StackError: both places hold a database (the operator must keep one).
    """
    if lstat_or_none(run_dir.legacy_database) is None:
        return
    if lstat_or_none(run_dir.database) is not None:
        raise StackError(
            f"both {run_dir.legacy_database} (an older layout's) and "
            f"{run_dir.database} exist: keep one, remove the other"
        )
    for suffix in DATABASE_SUFFIXES:
        old = run_dir.legacy_database.with_name(run_dir.legacy_database.name + suffix)
        new = run_dir.database.with_name(run_dir.database.name + suffix)
        if lstat_or_none(old) is None:
            continue
        os.rename(old, new)  # renames a link as a link: root never follows it
        give_to_service_user(new, owners)


def quarantine_service_files(run_dir: RunDir, owners: Owners) -> None:
    """Move what the service user owns directly in the run directory, outside the layout
    (an older layout let it write there: a planted package, say), into the quarantine
    directory, root's and closed; say so in one line. Nothing is deleted."""
    strays = [
        entry.name
        for entry in os.scandir(run_dir.root)
        if entry.name not in run_dir.layout_names
        and entry.stat(follow_symlinks=False).st_uid == owners.service_uid
    ]
    if not strays:
        return
    take_directory(run_dir.quarantine, owners.root_uid, owners.root_gid, 0o700)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for name in strays:
        os.rename(run_dir.root / name, run_dir.quarantine / f"{stamp}-{name}")
    click.echo(
        f"spillway up: moved what the service user owned in {run_dir.root} into "
        f"{run_dir.quarantine}/ (not part of the layout; an older one let it write "
        f"there): {', '.join(sorted(strays))}"
    )


def give_to_service_user(path: Path, owners: Owners) -> None:
    """Hand a file root just moved to the service user, through a descriptor: a link or a
    hard-linked name put there meanwhile is left as it is, never chowned."""
    try:
        fd = os.open(path, OPEN_FILE)
    except OSError:
        return  # a link (O_NOFOLLOW) or gone: nothing of root's to hand over
    try:
        if is_single_regular_file(os.fstat(fd)):
            os.fchown(fd, owners.service_uid, owners.service_gid)
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
