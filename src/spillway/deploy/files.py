"""File operations that never follow a link: how root writes and reads in the run directory.

Root writes configs and secrets where the service user once could plant a symlink or a
hard link (an older layout gave it the whole run directory). So a file is never written
in place: it is created anew beside its target (O_EXCL|O_NOFOLLOW, the final mode from
the start) and renamed over it, which replaces a planted link instead of writing through
it. Reads refuse links and anything but a regular file with one name.
"""

import os
import secrets
import stat
from pathlib import Path

NO_FOLLOW_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
NO_FOLLOW_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _create_new(path: Path, mode: int, owner: tuple[int, int] | None, fill) -> None:
    """Create ``path``, a name that must not exist (O_EXCL|O_NOFOLLOW: never written through
    a link planted there), with ``mode`` from the start and, given, ``owner`` (uid, gid);
    ``fill(binary_file)`` writes its bytes, which reach the disk before this returns. A
    failure leaves no file behind."""
    fd = os.open(path, NO_FOLLOW_CREATE, mode)
    try:
        if owner is not None:
            os.fchown(fd, *owner)
        os.fchmod(fd, mode)  # the umask may have narrowed it; never widened
        with os.fdopen(fd, "wb", closefd=False) as out:
            fill(out)
            out.flush()
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)


def write_atomically(path: Path, text: str, mode: int) -> None:
    """Replace ``path`` with a new file holding ``text``, with ``mode`` (never wider)."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    _create_new(temporary, mode, None, lambda out: out.write(text.encode("utf-8")))
    os.replace(temporary, path)


def read_regular(path: Path) -> str | None:
    """The text of ``path`` if it is a regular file with one name; None if it is missing,
    a link, a hard-linked name or anything else (it is then never opened through)."""
    try:
        fd = os.open(path, NO_FOLLOW_READ)
    except OSError:  # missing, or a link (O_NOFOLLOW: ELOOP)
        return None
    with os.fdopen(fd, encoding="utf-8", errors="replace") as source:
        info = os.fstat(source.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            return None
        return source.read()


def is_single_regular_file(info: os.stat_result) -> bool:
    """A regular file with one name: safe to take over (a hard link could be anyone's)."""
    return stat.S_ISREG(info.st_mode) and info.st_nlink == 1


def lstat_or_none(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except FileNotFoundError:
        return None


def copy_as_new(source: Path, target: Path, mode: int, owner: tuple[int, int] | None) -> None:
    """Copy ``source`` to ``target``, a name that must not exist, with ``mode`` and, given,
    ``owner`` (uid, gid)."""

    def fill(out) -> None:
        with open(source, "rb") as reader:
            while chunk := reader.read(1 << 20):
                out.write(chunk)

    _create_new(target, mode, owner, fill)
