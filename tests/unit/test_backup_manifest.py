"""A backup's manifest: what `spillway backup` writes is what `spillway restore` accepts,
and a directory that is not that backup any more is refused before anything is done."""

import json

import pytest

from spillway.deploy import backup_manifest
from spillway.deploy.backup_manifest import NotABackup


def made_backup(directory):
    (directory / "spillway.db").write_bytes(b"ledger")
    (directory / "redis.rdb").write_bytes(b"snapshot")
    return backup_manifest.write(directory, directory.parent / "run", "sqlite")


def test_what_backup_writes_reads_back(tmp_path):
    """Every file listed with its size and checksum; the manifest itself is not."""
    written = made_backup(tmp_path)
    read = backup_manifest.read(tmp_path)
    assert read == written
    assert set(read.files) == {"spillway.db", "redis.rdb"}
    assert read.files["redis.rdb"]["bytes"] == len(b"snapshot")
    assert read.database_file == "spillway.db"


def test_a_changed_file_is_refused(tmp_path):
    made_backup(tmp_path)
    (tmp_path / "redis.rdb").write_bytes(b"snapshoT")
    with pytest.raises(NotABackup, match="checksum"):
        backup_manifest.read(tmp_path)


def test_a_missing_file_is_refused(tmp_path):
    made_backup(tmp_path)
    (tmp_path / "spillway.db").unlink()
    with pytest.raises(NotABackup, match="lacks spillway.db"):
        backup_manifest.read(tmp_path)


@pytest.mark.parametrize(
    "document, said",
    [
        ("not json", "not a JSON object"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({"format": "spillway-backup", "version": 2}), "version 2"),
        (json.dumps({"format": "spillway-backup", "version": 1}), "incomplete"),
        (
            json.dumps(
                {
                    "format": "spillway-backup",
                    "version": 1,
                    "created_at": "now",
                    "source": "/run",
                    "ledger": "oracle",
                    "files": {},
                }
            ),
            "incomplete",
        ),
    ],
)
def test_a_manifest_of_another_kind_is_refused(tmp_path, document, said):
    (tmp_path / "manifest.json").write_text(document)
    with pytest.raises(NotABackup, match=said):
        backup_manifest.read(tmp_path)
