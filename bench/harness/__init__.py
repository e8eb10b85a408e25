"""The proof harness behind ``spillway bench`` / ``make bench``.

It starts the real stack on free ports with its baselines and the FastAPI + uvicorn peer,
runs the scenarios (catalog-hot, purchase-burst, slow-isolation, sse-fanout, drain) with
wrk, audits the flash-sale invariants after every burst, and writes a Markdown report, the
raw JSON and PNG plots. Every process it starts is stopped by PID / process group, however
the run ends.

It lives beside the older single-purpose scripts (bench/foundation.py, catalog.py,
sale.py), reuses their pieces, and is not part of the installed package: load generators,
naive baselines and a FastAPI app do not belong in the production wheel.
"""
