"""The privilege boundary of the run directory (SECURITY.md), end to end, started as root.

One run directory, two starts. The first start finds what an older layout left: everything
the service user's, with links planted where root writes and the package the audit (issue
20, item 1) planted for the migration to import. Then the service user tries every plant
on a path root reads or writes (each must be refused), writes what it may in its own
directories (code that would leave a marker if anything imported it, links where root
cleans up), and the stack starts again in the same directory: nothing was imported,
nothing followed, every root path is still root's.
"""

import grp
import json
import os
import pwd
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from contextlib import suppress
from pathlib import Path

import pytest
import redis
import requests

from flashsale.keys import WORKER_HEARTBEAT
from spillway.deploy.run_dir import RunDir
from tests.e2e.conftest import running_stack
from tests.waiting import NotYet
from tests.waiting import wait_until

SERVICE_USER = os.environ.get("SPILLWAY_USER", "spillway")
STACK_ENV = {"SPILLWAY_REDIS_MAXMEMORY": "256mb"}
# What an older `spillway up` generated (secrets.token_urlsafe(32)): kept on takeover.
OLD_SECRET_KEY = "Kx9_old-secret-key-made-by-an-older-layout0"
OLD_ADMIN_TOKEN = "Tq4-old-admin-token-made-by-an-older-layout"
VICTIM_TEXT = "root's own file: nothing may write, chown or chmod it\n"
# What the service user plants to see whether anything imports it: it leaves a marker.
PLANT = "import pathlib; pathlib.Path({marker!r}).open('a').write(__file__ + '\\n')\n"
PLANTED_MODULES = (
    "spillway/__init__.py",
    "spillway/__main__.py",
    "sitecustomize.py",
    "usercustomize.py",
)
# Tried as the service user, each must fail with PermissionError: a path root reads or
# writes, or a way to reach one. {name: Python statement}, run with `paths` bound.
ATTEMPTS = {
    "package in run/": "os.makedirs(paths.root / 'spillway')",
    "sitecustomize in run/": "open(paths.root / 'sitecustomize.py', 'x')",
    "write supervisord.conf": "open(paths.supervisord_conf, 'a')",
    "unlink supervisord.conf": "os.unlink(paths.supervisord_conf)",
    "rename over supervisord.conf": (
        "open(paths.data / 'conf', 'w').close(); "
        "os.rename(paths.data / 'conf', paths.supervisord_conf)"
    ),
    "read secrets.env": "open(paths.secrets_file)",
    "write nginx.conf": "open(paths.nginx_conf, 'a')",
    "write redis.conf": "open(paths.redis_conf, 'a')",
    "symlink logs/x.log": "os.symlink(victim, paths.logs / 'x.log')",
    "write into logs/": "open(paths.logs / 'new.log', 'x')",
    "append to a log": "open(paths.logs / 'supervisord.log', 'a')",
    "replace logs/": "os.rename(paths.logs, paths.data / 'logs')",
    "unlink nginx.pid": "os.unlink(paths.nginx_pid)",
    "plant a key in tls/": "open(paths.tls_key, 'x')",
    "symlink beside nginx.pid": "os.symlink(victim, paths.root / 'nginx.pid.new')",
    "symlink nginx/client": "os.symlink(victim_dir, paths.nginx_temp / 'client')",
    "move nginx/body away": "os.rename(paths.nginx_temp_path('body'), paths.data / 'body')",
    "remove nginx/body": "os.rmdir(paths.nginx_temp_path('body'))",
    "chmod the run directory": "os.chmod(paths.root, 0o777)",
    "supervisord's socket": "socket.socket(socket.AF_UNIX).connect(str(paths.supervisor_socket))",
}
ATTEMPT_SCRIPT = """
import json, os, socket, sys
from pathlib import Path
from spillway.deploy.run_dir import RunDir
paths, victim, victim_dir = RunDir(Path(sys.argv[1])), sys.argv[2], sys.argv[3]
outcomes = {}
for name, statement in json.loads(sys.argv[4]).items():
    try:
        exec(statement)
        outcomes[name] = "succeeded"
    except Exception as exc:
        outcomes[name] = type(exc).__name__
print(json.dumps(outcomes))
"""


class Boundary:
    """The module's run directory, the root files planted links point at, and the stack."""

    def __init__(self, work: Path):
        self.work = work
        self.paths = RunDir(work / "run")
        self.victim = work / "victim" / "root-only.txt"
        self.victim_dir = work / "victim" / "root-only"
        self.marker = work / "markers" / "imported"
        self.user = pwd.getpwnam(SERVICE_USER)
        self.stack = None
        self._running = ExitStack()

    def start(self):
        self.stack = self._running.enter_context(running_stack(STACK_ENV, self.paths.root))

    def restart(self):
        self._running.close()
        self._running = ExitStack()
        self.start()

    def close(self):
        self._running.close()

    def as_service_user(self, argv: list[str]) -> subprocess.CompletedProcess:
        """Run ``argv`` (after the interpreter) as the service user, from /."""
        return subprocess.run(
            [sys.executable, "-P", *argv],
            user=self.user.pw_uid,
            group=self.user.pw_gid,
            extra_groups=[],
            cwd="/",
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": os.environ["PATH"], "LANG": "C.UTF-8"},
        )

    def plant(self, directory: Path) -> None:
        """As the service user, plant code that would leave the marker if imported."""
        code = PLANT.format(marker=str(self.marker))
        script = (
            "import pathlib, sys\n"
            "for name in sys.argv[2:]:\n"
            "    target = pathlib.Path(sys.argv[1]) / name\n"
            "    target.parent.mkdir(exist_ok=True)\n"
            f"    target.write_text({code!r})\n"
        )
        result = self.as_service_user(["-c", script, str(directory), *PLANTED_MODULES])
        assert result.returncode == 0, (directory, result.stderr)


def make_old_layout(boundary: Boundary) -> None:
    """What `spillway up` before the boundary left, plus what the service user could plant
    in it: the whole run directory its own, and links where root writes."""
    paths, uid, gid = boundary.paths, boundary.user.pw_uid, boundary.user.pw_gid
    boundary.victim.parent.mkdir(mode=0o755)
    boundary.victim.write_text(VICTIM_TEXT)
    boundary.victim.chmod(0o600)
    boundary.victim_dir.mkdir(mode=0o700)
    boundary.marker.parent.mkdir()
    boundary.marker.parent.chmod(0o777)  # anyone who imports a plant can leave the marker
    for directory in (paths.root, paths.logs, paths.nginx_temp, paths.redis_data):
        directory.mkdir()
    for link in (
        paths.logs / "x.log",
        paths.logs / "supervisord.log",
        paths.nginx_pid,
        paths.supervisord_conf,
    ):
        link.symlink_to(boundary.victim)
    paths.nginx_temp_path("body").symlink_to(boundary.victim_dir)
    paths.tls.symlink_to(boundary.victim_dir)  # where a self-signed key would be written
    (paths.logs / "gunicorn.log").write_text("an old run's log line\n")
    paths.secrets_file.write_text(
        f"SPILLWAY_SECRET_KEY={OLD_SECRET_KEY}\nSPILLWAY_ADMIN_TOKEN={OLD_ADMIN_TOKEN}\n"
    )
    paths.redis_conf.write_text("# an old redis.conf\n")
    (paths.root / "celerybeat-schedule").write_bytes(b"an old pickle shelve")
    (paths.root / "redis.sock").write_text("")
    with sqlite3.connect(paths.legacy_database) as ledger:
        ledger.execute("CREATE TABLE kept_from_the_old_layout (x)")
    ledger.close()
    for name in PLANTED_MODULES:  # the audit's plant: imported by a migration run in run/
        (paths.root / name).parent.mkdir(exist_ok=True)
        (paths.root / name).write_text(PLANT.format(marker=str(boundary.marker)))
    for root, dirs, files in os.walk(paths.root):
        os.chown(root, uid, gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)
    paths.root.chmod(0o755)


@pytest.fixture(scope="module")
def boundary():
    """The stack, started as root in an older layout's run directory."""
    if os.geteuid() != 0:
        pytest.fail(
            "the privilege boundary exists only when `spillway up` starts as root: "
            "run this module as root (CI does)"
        )
    work = Path(tempfile.mkdtemp(prefix="spillway-boundary-"))
    work.chmod(0o755)  # the service user must reach the run directory inside
    subject = Boundary(work)
    try:
        make_old_layout(subject)
        subject.start()
        yield subject
    finally:
        subject.close()
        shutil.rmtree(work, ignore_errors=True)


def owner_and_mode(path: Path) -> tuple[str, str, int]:
    info = path.lstat()
    return (pwd.getpwuid(info.st_uid).pw_name, grp_name(info.st_gid), stat.S_IMODE(info.st_mode))


def grp_name(gid: int) -> str:
    return grp.getgrgid(gid).gr_name


def expected_layout(paths: RunDir) -> dict[Path, tuple[str, str, int]]:
    """SECURITY.md's table: who owns what under the run directory, and its mode."""
    service, group = SERVICE_USER, grp_name(pwd.getpwnam(SERVICE_USER).pw_gid)
    return {
        paths.root: ("root", group, 0o750),
        paths.logs: ("root", "root", 0o750),
        paths.nginx_temp: ("root", group, 0o750),
        paths.tls: ("root", "root", 0o700),
        paths.supervisord_conf: ("root", "root", 0o600),
        paths.secrets_file: ("root", "root", 0o600),
        paths.nginx_conf: ("root", "root", 0o644),
        paths.redis_conf: ("root", "root", 0o644),
        paths.data: (service, group, 0o700),
        paths.redis_data: (service, group, 0o700),
        paths.metrics: (service, group, 0o700),
        paths.sockets: (service, group, 0o750),
    }


def root_paths(paths: RunDir) -> list[Path]:
    """Every path root reads or writes, the logs included."""
    fixed = [
        paths.root,
        paths.logs,
        paths.nginx_temp,
        paths.tls,
        paths.supervisord_conf,
        paths.secrets_file,
        paths.nginx_conf,
        paths.redis_conf,
        paths.nginx_pid,
        paths.supervisord_pid,
        paths.supervisor_socket,
    ]
    return fixed + sorted(paths.logs.iterdir())


def assert_victims_untouched(boundary: Boundary) -> None:
    info = boundary.victim.lstat()
    assert boundary.victim.read_text() == VICTIM_TEXT
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, 0, 0o600)
    info = boundary.victim_dir.lstat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o700)
    assert list(boundary.victim_dir.iterdir()) == []


def test_an_older_layout_is_taken_back_without_following_its_links(boundary):
    """Links planted at logs/*.log, nginx.pid, supervisord.conf, nginx/body and tls were
    unlinked, never written through or chowned; the audit's planted package was never
    imported by the migration; old logs and secrets are kept, now root's; the SQLite
    database moved into data/; beat's old pickle shelve and stale sockets are gone; the
    planted files are quarantined."""
    paths = boundary.paths
    assert_victims_untouched(boundary)
    assert not boundary.marker.exists(), boundary.marker.read_text()
    assert not (paths.logs / "x.log").exists()
    for path in (paths.logs / "supervisord.log", paths.nginx_pid, paths.supervisord_conf):
        assert stat.S_ISREG(path.lstat().st_mode) and path.lstat().st_uid == 0, path
    body = paths.nginx_temp_path("body").lstat()
    assert stat.S_ISDIR(body.st_mode) and body.st_uid == boundary.user.pw_uid
    assert stat.S_ISDIR(paths.tls.lstat().st_mode) and paths.tls.lstat().st_uid == 0
    assert (paths.logs / "gunicorn.log").read_text().startswith("an old run's log line")
    assert boundary.stack.admin_headers() == {"Authorization": f"Bearer {OLD_ADMIN_TOKEN}"}
    created = requests.post(
        f"{boundary.stack.base_url}/api/v1/products",
        timeout=10,
        headers=boundary.stack.admin_headers(),
        json={"name": "Kept token", "price_cents": 1},
    )
    assert created.status_code == 201, created.text
    assert not paths.legacy_database.exists()
    with sqlite3.connect(f"file:{paths.database}?mode=ro", uri=True) as ledger:
        tables = {row[0] for row in ledger.execute("SELECT name FROM sqlite_master")}
    ledger.close()
    assert {"kept_from_the_old_layout", "products"} <= tables
    assert not (paths.root / "celerybeat-schedule").exists()
    assert not (paths.root / "redis.sock").exists()
    # The planted package and sitecustomize.py: moved out of reach, kept for a look.
    assert owner_and_mode(paths.quarantine) == ("root", "root", 0o700)
    quarantined = {name.split("-", 1)[1] for name in os.listdir(paths.quarantine)}
    assert quarantined == {"spillway", "sitecustomize.py", "usercustomize.py"}
    assert f"into {paths.quarantine}/" in boundary.stack.log_path.read_text()


def test_owners_and_modes_follow_the_boundary(boundary):
    """Root's paths are root's and closed to others; the service user owns only the
    directories it writes in; nothing in the run directory is world-readable."""
    layout = expected_layout(boundary.paths)
    assert {path: owner_and_mode(path) for path in layout} == layout
    for path in root_paths(boundary.paths):
        assert path.lstat().st_uid == 0, path
        assert not stat.S_ISLNK(path.lstat().st_mode), path


def test_the_service_user_cannot_plant_anything_root_reads(boundary):
    """Every way to plant a file, a link or a package where root reads or writes is
    refused with a permission error."""
    result = boundary.as_service_user(
        [
            "-c",
            ATTEMPT_SCRIPT,
            str(boundary.paths.root),
            str(boundary.victim),
            str(boundary.victim_dir),
            json.dumps(ATTEMPTS),
        ]
    )
    assert result.returncode == 0, result.stderr
    outcomes = json.loads(result.stdout)
    assert outcomes == {name: "PermissionError" for name in ATTEMPTS}


def test_what_the_service_user_writes_is_never_run_or_followed_by_root(boundary):
    """Code planted in every directory the service user owns, and links to root's files
    in the metrics directory root empties: after a restart in the same run directory
    nothing was imported, nothing followed, every root path is still root's, and
    supervisord.conf changed only by `spillway up` rendering it again."""
    paths = boundary.paths
    for directory in (paths.data, paths.sockets, paths.metrics, paths.redis_data):
        boundary.plant(directory)
    links = [
        "-c",
        "import os, sys; os.symlink(sys.argv[1], sys.argv[3]); "
        "os.symlink(sys.argv[2], sys.argv[4])",
        str(boundary.victim),
        str(boundary.victim_dir),
        str(paths.metrics / "file-link"),
        str(paths.metrics / "dir-link"),
    ]
    assert boundary.as_service_user(links).returncode == 0
    rendered = paths.supervisord_conf.read_bytes()
    before = {path: path.lstat().st_uid for path in root_paths(paths)}
    assert set(before.values()) == {0}
    boundary.restart()
    assert not boundary.marker.exists(), boundary.marker.read_text()
    assert_victims_untouched(boundary)
    assert all(path.lstat().st_uid == 0 for path in root_paths(paths))
    assert list(paths.metrics.glob("*-link")) == []
    conf = paths.supervisord_conf.lstat()
    assert (conf.st_uid, stat.S_IMODE(conf.st_mode)) == (0, 0o600)
    programs = {
        line
        for line in paths.supervisord_conf.read_text().splitlines()
        if line.startswith("[program:")
    }
    assert programs == {
        line for line in rendered.decode().splitlines() if line.startswith("[program:")
    }
    assert "directory=/" in paths.supervisord_conf.read_text()
    layout = expected_layout(paths)
    assert {path: owner_and_mode(path) for path in layout} == layout


def test_beat_keeps_no_schedule_file_and_still_ticks(boundary):
    """Celery beat runs on redbeat (schedule and lock in redis): no pickle shelve anywhere
    in the run directory, and its heartbeat reaches the worker again and again."""
    leftovers = [path for path in boundary.paths.root.rglob("*") if "celerybeat" in path.name]
    assert leftovers == []
    client = redis.Redis(unix_socket_path=str(boundary.paths.redis_socket))
    try:
        beats = []

        def three_beats() -> bool:
            beat = client.get(WORKER_HEARTBEAT)
            if beat is not None:
                beats.append(beat)
            return len(set(beats)) >= 3

        with suppress(NotYet):
            wait_until(three_beats, 60, 0.5)
        assert len(set(beats)) >= 3, beats
    finally:
        client.close()


def test_redis_gets_its_memory_ceiling_and_never_evicts(boundary):
    """SPILLWAY_REDIS_MAXMEMORY is rendered into redis.conf; the policy stays noeviction."""
    client = redis.Redis(unix_socket_path=str(boundary.paths.redis_socket))
    try:
        assert client.config_get("maxmemory") == {"maxmemory": str(256 * 2**20)}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    finally:
        client.close()


def test_flower_asks_for_the_admin_token(boundary):
    """Flower answers 401 without credentials, and its page with user admin and the admin
    token as password, as the banner says; the password is in no process argument."""
    banner = boundary.stack.log_path.read_text()
    line = next(line for line in banner.splitlines() if line.strip().startswith("flower"))
    assert "user admin, password: the admin token" in line
    url = line.split()[1]
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, auth=("admin", "wrong"), timeout=10).status_code == 401
    answer = requests.get(url, auth=("admin", OLD_ADMIN_TOKEN), timeout=10)
    assert answer.status_code == 200 and "Flower" in answer.text
    flower = boundary.stack.program_pid("flower")
    assert OLD_ADMIN_TOKEN.encode() not in Path(f"/proc/{flower}/cmdline").read_bytes()
