"""One killable stack for the fault tests (starting it costs seconds), stopped after the
last of them; each test makes its own sale, and ``stack`` brings back any part a failed
test left down."""

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.faults.stack import FaultStack


@pytest.fixture(scope="package")
def fault_stack(tmp_path_factory):
    work = tmp_path_factory.mktemp("fault-stack")
    running = FaultStack(work)
    running.start_worker()
    yield running
    running.stop()
    shutil.copytree(running.logs, artifacts_dir() / "fault-stack", dirs_exist_ok=True)


def artifacts_dir() -> Path:
    return Path(os.environ.get("SPILLWAY_TEST_ARTIFACTS", "test-artifacts"))


@pytest.fixture
def stack(fault_stack):
    fault_stack.ensure_up()
    return fault_stack


@pytest.fixture
def record_figures(request):
    """Write a test's figures to test-artifacts/fault-figures.jsonl (for the report)."""

    def record(figures, **extra) -> None:
        artifacts = artifacts_dir()
        artifacts.mkdir(parents=True, exist_ok=True)
        line = {"test": request.node.nodeid, **figures.as_dict(), **extra}
        with open(artifacts / "fault-figures.jsonl", "a") as out:
            out.write(json.dumps(line) + "\n")

    return record
