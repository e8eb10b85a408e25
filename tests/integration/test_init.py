"""`spillway init DIR`: the tutorial's first step makes an app that runs on the runtime."""

import os
import subprocess
import sys


def spillway(*args: str, cwd="/") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spillway", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def test_init_makes_an_app_the_runtime_serves(tmp_path, service_env):
    """The package it writes imports, builds, answers its slow and fast endpoints and the
    runtime's /healthz and /readyz (on this run's real redis and memcached)."""
    made = spillway("init", str(tmp_path / "my-shop"))
    assert made.returncode == 0, made.stderr
    assert "SPILLWAY_APP=my_shop:create_app" in made.stdout
    probe = (
        "from my_shop import create_app\n"
        "client = create_app().test_client()\n"
        "print(client.get('/fast').text, client.get('/slow?seconds=0').text,\n"
        "      client.get('/healthz').json, client.get('/readyz').json)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
        env={
            **os.environ,
            **service_env,
            "SPILLWAY_ENV": "test",
            "PYTHONPATH": str(tmp_path / "my-shop"),
        },
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[0] == "fast"
    assert "{'status': 'ok'}" in run.stdout
    assert "'checks': {'redis': 'ok', 'memcached': 'ok'}" in run.stdout


def test_init_refuses_in_one_line(tmp_path):
    """An existing package, or a name no package can have: one line, exit 1, no traceback."""
    assert spillway("init", str(tmp_path), "--name", "shop").returncode == 0
    for args in (["--name", "shop"], ["--name", "class"], ["--name", "9lives"]):
        refused = spillway("init", str(tmp_path), *args)
        assert refused.returncode == 1
        assert "Traceback" not in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
