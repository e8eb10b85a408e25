"""A tree copied into a directory of root's, readable by every user and writable by root
alone, and kept in step with its source: what the service user runs when it cannot read
the checkout (spillway/deploy/readable.py).

Each call copies what changed since the last one (by size, mtime and mode), removes what
the source no longer has and keeps links as links. A file is never written in place: it is
written beside its name (O_EXCL|O_NOFOLLOW) and renamed over it, so a process importing
from the copy meanwhile sees the old file or the new one, never half of one.
"""

import os
import secrets
import shutil
import stat
from pathlib import Path

from spillway.deploy.files import lstat_or_none

NO_FOLLOW_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
DIRECTORY_MODE = 0o755
FILE_MODE = 0o644
PROGRAM_MODE = 0o755
COPY_CHUNK = 1 << 20


def mirror(source: Path, target: Path) -> None:
    """Make ``target`` hold what ``source`` holds: directories 0755, files 0644 (0755 if
    the source may be run), links as they are; sockets and fifos are left out."""
    ensure_directory(target)
    for directory, subdirectories, files in os.walk(source):
        here = target / Path(directory).relative_to(source)
        wanted = set()
        for name in subdirectories + files:
            if mirror_entry(Path(directory) / name, here / name):
                wanted.add(name)
        for entry in os.scandir(here):
            if entry.name not in wanted:
                remove(Path(entry.path))


def mirror_entry(source: Path, target: Path) -> bool:
    """Copy one entry (a directory is made; os.walk fills it); False if it is left out."""
    info = source.lstat()
    if stat.S_ISLNK(info.st_mode):
        mirror_link(source, target)
    elif stat.S_ISDIR(info.st_mode):
        ensure_directory(target)
    elif stat.S_ISREG(info.st_mode):
        mirror_file(source, target, info)
    else:
        return False
    return True


def ensure_directory(path: Path) -> None:
    """A real directory at ``path`` with mode 0755 (whatever else was there is removed)."""
    info = lstat_or_none(path)
    if info is not None and not stat.S_ISDIR(info.st_mode):
        remove(path)
        info = None
    if info is None:
        path.mkdir(mode=DIRECTORY_MODE)
    os.chmod(path, DIRECTORY_MODE)  # mkdir's mode is narrowed by the umask


def mirror_file(source: Path, target: Path, info: os.stat_result) -> None:
    mode = PROGRAM_MODE if info.st_mode & 0o111 else FILE_MODE
    current = lstat_or_none(target)
    if (
        current is not None
        and stat.S_ISREG(current.st_mode)
        and current.st_size == info.st_size
        and current.st_mtime_ns == info.st_mtime_ns
        and stat.S_IMODE(current.st_mode) == mode
    ):
        return
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temporary, NO_FOLLOW_CREATE, mode)
    try:
        with open(source, "rb") as reader, os.fdopen(fd, "wb", closefd=False) as writer:
            shutil.copyfileobj(reader, writer, COPY_CHUNK)
        os.fchmod(fd, mode)
        os.utime(fd, ns=(info.st_atime_ns, info.st_mtime_ns))  # pyc files check the mtime
    except BaseException:
        os.close(fd)
        os.unlink(temporary)
        raise
    os.close(fd)
    replace(temporary, target)


def mirror_link(source: Path, target: Path) -> None:
    destination = os.readlink(source)
    current = lstat_or_none(target)
    if current is not None and stat.S_ISLNK(current.st_mode) and os.readlink(target) == destination:
        return
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    os.symlink(destination, temporary)
    replace(temporary, target)


def replace(temporary: Path, target: Path) -> None:
    """Rename ``temporary`` over ``target`` (a directory there is removed first)."""
    current = lstat_or_none(target)
    if current is not None and stat.S_ISDIR(current.st_mode):
        shutil.rmtree(target)
    os.replace(temporary, target)


def remove(path: Path) -> None:
    info = lstat_or_none(path)
    if info is None:
        return
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(path)  # fd-based: never follows a link inside the tree
    else:
        path.unlink()
