"""Waiting for something to become true: the one polling loop of the tests and the bench.

Servers starting, queues draining, a worker's first heartbeat: each is a check called until
it holds, with a generous deadline (a shared, loaded machine), never a fixed sleep.
"""

import time
from collections.abc import Callable


class NotYet(AssertionError):
    """The deadline passed before the check held (an AssertionError: a test fails on it)."""


def wait_until(
    check: Callable,
    timeout: float = 30.0,
    interval: float = 0.2,
    *,
    until: Callable[[object], bool] = bool,
    what: str = "",
    ignoring: tuple[type[BaseException], ...] = (),
    fail_if: Callable[[], str | None] | None = None,
):
    """Call ``check`` until its value satisfies ``until`` (is truthy, by default), and
    return that value.

    :param what: what is awaited, for the message when it never comes.
    :param ignoring: exceptions that mean "not yet" (a server still starting).
    :param fail_if: called before each try; a reason it returns ends the wait at once
        (the process that should answer has exited).
    :raise NotYet: the timeout passed; names ``what`` and the last value or exception.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        reason = fail_if() if fail_if else None
        if reason:
            raise NotYet(f"{what or 'waiting'}: {reason}")
        try:
            value = check()
        except ignoring as exc:
            value, last = None, exc
        else:
            if until(value):
                return value
            last = value
        if time.monotonic() >= deadline:
            raise NotYet(f"{what or 'not true'} after {timeout:g}s (last: {last!r:.500})")
        time.sleep(interval)
