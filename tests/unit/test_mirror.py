"""The readable copy of a tree (spillway/deploy/mirror.py), on a real filesystem: what the
service user runs when it cannot read the checkout."""

import os
import stat

from spillway.deploy.mirror import mirror


def mode(path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_a_mirror_is_readable_by_all_and_keeps_links_as_links(tmp_path):
    """Files become 0644 (0755 if they could be run), directories 0755, whatever the
    source's modes; a link stays a link to the same place; a fifo is left out."""
    source, copy = tmp_path / "source", tmp_path / "copy"
    (source / "pkg").mkdir(parents=True, mode=0o700)
    (source / "pkg" / "mod.py").write_text("x = 1\n")
    (source / "pkg" / "mod.py").chmod(0o600)
    (source / "run.sh").write_text("#!/bin/sh\n")
    (source / "run.sh").chmod(0o700)
    (source / "python").symlink_to("/usr/bin/python3")
    os.mkfifo(source / "pipe")

    mirror(source, copy)

    assert (copy / "pkg" / "mod.py").read_text() == "x = 1\n"
    assert mode(copy / "pkg") == 0o755
    assert mode(copy / "pkg" / "mod.py") == 0o644
    assert mode(copy / "run.sh") == 0o755
    assert os.readlink(copy / "python") == "/usr/bin/python3"
    assert not (copy / "pipe").exists()
    assert (copy / "pkg" / "mod.py").stat().st_mtime_ns == (
        source / "pkg" / "mod.py"
    ).stat().st_mtime_ns  # compiled files stay valid


def test_a_mirror_follows_its_source(tmp_path):
    """Run again, it copies what changed, removes what the source lost (files, directories,
    links) and replaces an entry whose kind changed; an unchanged file is not rewritten."""
    source, copy = tmp_path / "source", tmp_path / "copy"
    (source / "gone").mkdir(parents=True)
    (source / "gone" / "old.py").write_text("old\n")
    (source / "kept.py").write_text("kept\n")
    (source / "changed.py").write_text("before\n")
    (source / "link").symlink_to("kept.py")
    (source / "becomes_dir").write_text("a file\n")
    mirror(source, copy)
    kept_inode = (copy / "kept.py").stat().st_ino

    for path in (source / "gone" / "old.py", source / "link", source / "becomes_dir"):
        path.unlink()
    (source / "gone").rmdir()
    (source / "changed.py").write_text("after, longer\n")
    (source / "becomes_dir").mkdir()
    (source / "becomes_dir" / "inside.py").write_text("inside\n")
    mirror(source, copy)

    assert sorted(p.name for p in copy.iterdir()) == ["becomes_dir", "changed.py", "kept.py"]
    assert (copy / "changed.py").read_text() == "after, longer\n"
    assert (copy / "becomes_dir" / "inside.py").read_text() == "inside\n"
    assert (copy / "kept.py").stat().st_ino == kept_inode
    assert not [p for p in copy.rglob("*.tmp")]
