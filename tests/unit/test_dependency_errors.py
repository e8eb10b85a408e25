"""Which exceptions mean "a dependency is down or refuses writes for now" (a 503)."""

import pytest
import redis

from spillway.errors import is_dependency_down

MISCONF = "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist"


@pytest.mark.parametrize(
    "exc",
    [
        redis.exceptions.ConnectionError("refused"),
        redis.exceptions.TimeoutError("slow"),
        redis.exceptions.BusyLoadingError("loading"),
        redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
        redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
        redis.exceptions.ResponseError(MISCONF),
        redis.exceptions.ResponseError(
            f"Command # 1 (HSET k f v) of pipeline caused error: {MISCONF}"
        ),
        redis.exceptions.ResponseError("NOREPLICAS Not enough good replicas to write."),
    ],
    ids=repr,
)
def test_refusals_and_outages_are_dependency_errors(exc):
    """Each of these is redis down or refusing writes: the request is a 503."""
    assert is_dependency_down(exc)


@pytest.mark.parametrize(
    "exc",
    [
        redis.exceptions.ResponseError("WRONGTYPE Operation against a key holding the wrong kind"),
        redis.exceptions.ResponseError("ERR unknown command 'MISCONFIGURE'"),
        ValueError("a bug"),
    ],
    ids=repr,
)
def test_other_errors_are_not(exc):
    """A wrong command or a bug stays a 500: retrying would not help."""
    assert not is_dependency_down(exc)
