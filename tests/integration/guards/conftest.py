"""Fixtures of the guards' tests."""

import pytest


@pytest.fixture
def record(request):
    """A figure for the report (docs/guards.md): printed, and kept in the test's
    user_properties (``--junitxml``)."""

    def remember(name: str, value) -> None:
        request.node.user_properties.append((name, value))
        print(f"\nFIGURE {name}: {value}")

    return remember
