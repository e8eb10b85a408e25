"""The run directory's file primitives and layout on a real filesystem: writes replace a
planted link instead of following it, reads refuse links, and `spillway up` started by a
user other than root keeps everything that user's and closed. (As root, with the service
user: tests/e2e/test_privilege_boundary.py.)"""

import os
import stat

import pytest

from spillway.deploy.boundary import claim
from spillway.deploy.files import read_regular
from spillway.deploy.files import write_atomically
from spillway.deploy.layout import StackError
from spillway.deploy.run_dir import RunDir
from spillway.deploy.service_user import ServiceUser

NOBODY = ServiceUser("nobody", 65534, 65534, "nogroup")


def test_a_write_replaces_a_planted_link_and_never_writes_through_it(tmp_path):
    """A symlink at the target is replaced by a new file with the mode asked for; the file
    it pointed at is unchanged."""
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    target = tmp_path / "supervisord.conf"
    target.symlink_to(victim)
    write_atomically(target, "[supervisord]\n", 0o600)
    assert victim.read_text() == "untouched"
    info = target.lstat()
    assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
    assert target.read_text() == "[supervisord]\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_read_refuses_links_and_hard_linked_names(tmp_path):
    """secrets.env is read only when it is a regular file with one name."""
    real = tmp_path / "real"
    real.write_text("SPILLWAY_ADMIN_TOKEN=x\n")
    (tmp_path / "symlink").symlink_to(real)
    os.link(real, tmp_path / "hardlink")
    assert read_regular(tmp_path / "symlink") is None
    assert read_regular(tmp_path / "hardlink") is None  # two names now, the original too
    assert read_regular(tmp_path / "missing") is None
    (tmp_path / "hardlink").unlink()
    assert read_regular(real) == "SPILLWAY_ADMIN_TOKEN=x\n"


def test_without_a_service_user_everything_is_the_callers_and_closed(tmp_path):
    """Not started as root: the same layout, every directory the caller's with mode 0700."""
    run_dir = RunDir(tmp_path / "run")
    claim(run_dir, None, move_legacy_database=False)
    for directory in (
        run_dir.root,
        run_dir.logs,
        run_dir.nginx_temp,
        run_dir.data,
        run_dir.redis_data,
        run_dir.sockets,
        run_dir.metrics,
    ):
        info = directory.lstat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (os.geteuid(), 0o700), directory


def test_a_parent_others_can_write_is_refused(tmp_path):
    """Whoever can rename a parent can swap the run directory: `spillway up` refuses it,
    naming the parent, before it creates or changes anything."""
    parent = tmp_path / "shared"
    parent.mkdir()
    parent.chmod(0o777)  # writable by anyone, and not sticky
    with pytest.raises(StackError, match=str(parent)):
        claim(RunDir(parent / "run"), NOBODY, move_legacy_database=False)
    assert not (parent / "run").exists()
