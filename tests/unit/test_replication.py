"""`spillway up --redis sentinel`'s choice and its URLs (spillway/deploy/replication.py)."""

import pytest

from spillway.deploy import replication
from spillway.deploy.layout import StackError
from spillway.deploy.run_dir import RunDir
from spillway.redis_location import sentinel_address


def test_the_runtime_reads_back_the_sentinels_and_password_it_is_given(tmp_path):
    made = replication.load_or_create(RunDir(tmp_path))
    assert replication.load(RunDir(tmp_path)) == made  # kept: the Sentinels' files name them
    found = sentinel_address(made.url(1))
    assert found.sentinels == tuple(("127.0.0.1", port) for port in made.sentinels)
    assert (found.master, found.db, found.password) == ("spillway", 1, made.password)
    assert len(set(made.nodes + made.sentinels)) == 5


def test_a_run_directory_keeps_its_sentinels_and_refuses_to_go_back_in_one_line(tmp_path):
    run_dir = RunDir(tmp_path)
    assert replication.chosen_topology(run_dir) == "single"
    replication.load_or_create(run_dir)
    assert replication.chosen_topology(run_dir) == "sentinel"
    with pytest.raises(StackError, match="cannot go back to one redis"):
        replication.chosen_topology(run_dir, "single")


def test_an_unknown_topology_names_its_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("SPILLWAY_REDIS_TOPOLOGY", "cluster")
    with pytest.raises(StackError, match="SPILLWAY_REDIS_TOPOLOGY=cluster: choose one of"):
        replication.chosen_topology(RunDir(tmp_path))
