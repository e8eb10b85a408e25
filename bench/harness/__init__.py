"""The proof harness behind ``spillway bench`` / ``make bench``, and the pieces the
standalone benches in bench/ are built on.

It starts the real stack on free ports with its baselines and the FastAPI + uvicorn peer,
runs the scenarios (catalog-hot, purchase-burst, slow-isolation, sse-fanout, drain) with
wrk, audits the flash-sale invariants after every burst, and writes a Markdown report, the
raw JSON and PNG plots. Every process it starts is stopped by PID / process group, however
the run ends. Its servers and its audit are the test suite's (tests/servers.py,
tests/spillway_up.py, tests/audit.py).

It is not part of the installed package: load generators, naive baselines and a FastAPI
app do not belong in the production wheel.
"""

import sys
from pathlib import Path

# The standalone benches run as `python bench/NAME.py`: the repository root on the path too,
# for tests/ (the servers, `spillway up` and the audit the bench shares with the suite).
REPO_ROOT = str(Path(__file__).resolve().parents[2])
if REPO_ROOT not in sys.path:
    sys.path.append(REPO_ROOT)
