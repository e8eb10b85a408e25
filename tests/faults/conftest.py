"""One killable stack for the fault tests (starting it costs seconds); each test makes its own
sale and leaves every part running again, which ``stack`` checks before each test."""

import json
import os
from pathlib import Path

import pytest

from tests.faults.stack import FaultStack


@pytest.fixture(scope="session")
def fault_stack(tmp_path_factory):
    work = tmp_path_factory.mktemp("fault-stack")
    running = FaultStack(work)
    running.start_worker()
    yield running
    running.stop()


@pytest.fixture
def stack(fault_stack):
    fault_stack.ensure_up()
    return fault_stack


@pytest.fixture
def record_figures(request):
    """Write a test's figures to test-artifacts/fault-figures.jsonl (for the report)."""

    def record(figures, **extra) -> None:
        artifacts = Path(os.environ.get("SPILLWAY_TEST_ARTIFACTS", "test-artifacts"))
        artifacts.mkdir(parents=True, exist_ok=True)
        line = {"test": request.node.nodeid, **figures.as_dict(), **extra}
        with open(artifacts / "fault-figures.jsonl", "a") as out:
            out.write(json.dumps(line) + "\n")

    return record
