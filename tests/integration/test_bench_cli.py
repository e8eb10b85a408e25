"""`spillway bench` as an operator runs it: the harness in bench/, in a fresh interpreter."""

from tests.integration.test_cli import spillway


def test_bench_help_lists_the_scenarios():
    """--help reaches the harness (not Flask's CLI) and names every scenario and mode."""
    result = spillway("bench", "--help")
    assert result.returncode == 0, result.stderr
    for word in (
        "--quick",
        "--only",
        "catalog-hot",
        "purchase-burst",
        "slow-isolation",
        "sse-fanout",
        "drain",
    ):
        assert word in result.stdout


def test_bench_refuses_an_unknown_scenario_before_starting_anything():
    """A typo in --only is an error in one line, and nothing is started."""
    result = spillway("bench", "--only", "catalog-hot,nope")
    assert result.returncode == 2
    assert "unknown scenario(s) nope" in result.stderr
    assert "spillway bench (" not in result.stdout
