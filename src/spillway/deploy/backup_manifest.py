"""A backup directory's manifest (``manifest.json``): what `spillway backup` wrote, and
how `spillway restore` knows a directory is one before it changes anything.

It names the format and its version, when and from where the backup was taken, what
kind of ledger it holds, and every file with its size and SHA-256: a directory without
it, of another version, or with a file missing or changed, is not restored.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone
from pathlib import Path

from spillway.deploy.files import read_regular

NAME = "manifest.json"
FORMAT = "spillway-backup"
VERSION = 1
CHUNK = 1 << 20
# The files a backup holds, by what they are.
DATABASE_FILES = {"sqlite": "spillway.db", "postgresql": "database.pgdump"}
REDIS_FILE = "redis.rdb"
SECRETS_FILE = "secrets.env"


class NotABackup(RuntimeError):
    """The directory is not a backup this version can restore; the message says why."""


@dataclass(frozen=True)
class Manifest:
    """What one backup holds."""

    created_at: str
    source: str  # the run directory it was taken from
    ledger: str  # "sqlite" or "postgresql"
    files: dict[str, dict]  # name -> {"bytes": n, "sha256": hex}

    @property
    def database_file(self) -> str:
        return DATABASE_FILES[self.ledger]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write(directory: Path, source: Path, ledger: str) -> Manifest:
    """Checksum every file in ``directory`` and write the manifest beside them."""
    files = {
        path.name: {"bytes": path.stat().st_size, "sha256": sha256_of(path)}
        for path in sorted(directory.iterdir())
        if path.is_file() and path.name != NAME
    }
    manifest = Manifest(
        datetime.now(timezone.utc).isoformat(timespec="seconds"), str(source), ledger, files
    )
    document = {"format": FORMAT, "version": VERSION, **manifest.__dict__}
    (directory / NAME).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return manifest


def read(directory: Path) -> Manifest:
    """The manifest of ``directory``, every file it names checked against it.

    :raise NotABackup: no manifest, another format or version, a file missing or changed.
    """
    text = read_regular(directory / NAME)
    if text is None:
        raise NotABackup(f"{directory} is not a Spillway backup: it has no {NAME}")
    try:
        document = json.loads(text)
        kind, version = document.get("format"), document.get("version")
    except (ValueError, AttributeError):
        raise NotABackup(
            f"{directory / NAME} is not a backup manifest (not a JSON object)"
        ) from None
    if kind != FORMAT:
        raise NotABackup(f"{directory / NAME} is not a Spillway backup manifest")
    if version != VERSION:
        raise NotABackup(
            f"{directory} is a version {version} backup; this Spillway restores version {VERSION}"
        )
    try:
        manifest = Manifest(
            str(document["created_at"]),
            str(document["source"]),
            str(document["ledger"]),
            dict(document["files"]),
        )
        wanted = {manifest.database_file, REDIS_FILE}
    except (KeyError, TypeError, ValueError):
        raise NotABackup(f"{directory / NAME} is incomplete or malformed") from None
    for name in sorted(wanted - set(manifest.files)):
        raise NotABackup(f"{directory / NAME} does not list {name}")
    for name, expected in manifest.files.items():
        path = directory / Path(name).name
        if not path.is_file():
            raise NotABackup(f"{directory} lacks {name}, which its manifest lists")
        if sha256_of(path) != expected.get("sha256"):
            raise NotABackup(f"{path} does not match its checksum in the manifest: damaged")
    return manifest
