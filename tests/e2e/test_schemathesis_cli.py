"""schemathesis's own CLI against the whole stack (nginx in front), as an outside client
would run it: `schemathesis run …/openapi.json --checks all`, every phase (examples,
coverage, fuzzing, stateful, following the document's links from a sale to its purchase
and from a purchase's order to its status and payment), once with the admin token and once
with a buyer's. It must find nothing. Seeded and deterministic, bounded by a fixed number
of examples per operation (about a minute each); prints the count of cases.

What the document cannot say is said once, in tests/e2e/schemathesis.toml.
"""

import re
import subprocess
import sys
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from pathlib import Path

import pytest
import requests

CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
EXAMPLES_PER_OPERATION = 80
RUN_TIMEOUT = 300
CASES = re.compile(r"(\d+) generated, (\d+) passed")


@pytest.fixture(scope="module")
def callers(stack):
    """(who, bearer token): the admin, and a buyer; with a sale on, so that a buyer's
    stateful run reaches a purchase, its order and its payment."""
    admin = stack.admin_headers()
    product = requests.get(f"{stack.base_url}/api/v1/products", timeout=10).json()["items"][0]
    ends = datetime.now(timezone.utc) + timedelta(hours=2)
    requests.post(
        f"{stack.base_url}/api/v1/sales",
        headers=admin,
        timeout=10,
        json={
            "product_id": product["id"],
            "stock": 1_000_000,
            "per_user_limit": 100,
            "ends_at": ends.isoformat(),
        },
    ).raise_for_status()
    buyer = requests.post(
        f"{stack.base_url}/api/v1/users", json={"name": "schemathesis"}, timeout=10
    ).json()
    return {"admin": admin["Authorization"].removeprefix("Bearer "), "buyer": buyer["token"]}


@pytest.mark.timeout(RUN_TIMEOUT + 60)
@pytest.mark.parametrize("who", ["admin", "buyer"])
def test_schemathesis_checks_all_finds_nothing(stack, callers, who, capsys, tmp_path):
    """Every check schemathesis has, every phase, as ``who``: exit 0, no failure, the
    examples, coverage, fuzzing and stateful phases all run, links followed."""
    result = subprocess.run(
        [
            str(SCHEMATHESIS),
            "--config-file",
            str(CONFIG),
            "run",
            f"{stack.base_url}/api/v1/openapi.json",
            "--checks",
            "all",
            "-H",
            f"Authorization: Bearer {callers[who]}",
            "--seed",
            "1",
            "--generation-deterministic",
            "-n",
            str(EXAMPLES_PER_OPERATION),
            "--request-timeout",
            "10",
            "--workers",
            "1",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        cwd=tmp_path,
    )  # its cache and reports go there, not into the checkout
    out = result.stdout + result.stderr
    found = CASES.search(out)
    with capsys.disabled():  # the count belongs in every run's output, CI's included
        print(
            f"\nschemathesis CLI as {who}: "
            f"{found.group(1) if found else '?'} cases, exit {result.returncode}"
        )
    assert result.returncode == 0 and found and found.group(1) == found.group(2), out[-6000:]
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert re.search(rf"✅\s+{phase} \(in", out), (phase, out[-3000:])
    covered = re.search(r"API Links:\s+(\d+) covered", out)
    assert covered and int(covered.group(1)) > 0, out[-3000:]
