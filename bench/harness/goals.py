"""The issue's goals, each judged from one run's measurements: (goal, measured, verdict)."""

CEILING = "nginx static (ceiling)"
# Each path of ours, and the peer's path doing the same work on the same backends.
PEER_OF = {
    "nginx → memcached": "peer: product, memcached",
    "Flask, memcached hit": "peer: product, memcached",
    "Flask, database": "peer: product, database",
    "bare hello (gevent)": "peer: hello",
    "spillway purchase": "peer purchase",
}
PEER_BEST = {
    "Flask, memcached hit": ("peer: product, memcached", "peer: product, memcached, keep-alive"),
    "spillway purchase": ("peer purchase", "peer purchase, keep-alive"),
}
MET, MISSED, UNKNOWN = "✔", "✘", "–"


def index_runs(results: dict) -> dict:
    """{(target, connections): run} over the catalog and purchase scenarios."""
    runs = {}
    for scenario in ("catalog-hot", "purchase-burst"):
        for run in results.get(scenario, {}).get("runs", []):
            runs[(run["target"], run["connections"])] = run
    return runs


def ratio_goal(
    runs: dict, numerator: str, denominator: str | tuple, at_least: float, text: str
) -> tuple[str, str, str]:
    """req/s of ``numerator`` over ``denominator`` (the best of several) per concurrency."""
    denominators = (denominator,) if isinstance(denominator, str) else denominator
    values = {}
    for (target, connections), run in sorted(runs.items(), key=lambda item: item[0][1]):
        bottoms = [
            runs[(name, connections)]["rps"] for name in denominators if (name, connections) in runs
        ]
        if target == numerator and bottoms and max(bottoms):
            values[connections] = run["rps"] / max(bottoms)
    if not values:
        return text, "not measured", UNKNOWN
    measured = ", ".join(f"c{c}: {v:.2f}" for c, v in values.items())
    return text, measured, MET if min(values.values()) >= at_least else MISSED


def with_ceiling(goal: tuple, ceiling: tuple) -> tuple:
    """``goal`` with, beside its figures, the bare hello's over the same denominator: no
    purchase on the stack can outrun a view that does nothing, so that is its ceiling."""
    text, measured, verdict = goal
    if ceiling[2] != UNKNOWN:
        measured += f" (ceiling on this machine, bare hello ÷ naive: {ceiling[1]})"
    return text, measured, verdict


def p99_goal(runs: dict, target: str, connections: int, limit_ms: float) -> tuple:
    text = f"{target}: p99 ≤ {limit_ms:.0f} ms through nginx at {connections} connections"
    run = runs.get((target, connections))
    if run is None or run["p99_ms"] is None:
        return text, "not measured", UNKNOWN
    failed = run["timeouts"] > 0
    # Little's law: with N connections always busy, the mean latency is N ÷ throughput.
    floor = connections / run["rps"] * 1000 if run["rps"] else None
    measured = f"{run['p99_ms']:.1f} ms" + (f" ({run['timeouts']} timeouts)" if failed else "")
    if floor:
        measured += f"; mean ≥ {floor:.0f} ms at {run['rps']:,.0f} req/s"
    return text, measured, MET if run["p99_ms"] <= limit_ms and not failed else MISSED


def evaluate(results: dict) -> list[tuple[str, str, str]]:
    runs = index_runs(results)
    goals = [
        ratio_goal(
            runs,
            "nginx → memcached",
            CEILING,
            0.6,
            "hot product via nginx→memcached ≥ 0.6 × nginx static",
        ),
        ratio_goal(
            runs,
            "Flask, memcached hit",
            "bare hello (gevent)",
            0.8,
            "hot product through Flask ≥ 0.8 × bare hello",
        ),
        ratio_goal(
            runs,
            "spillway purchase",
            "bare hello (gevent), same script",
            0.6,
            "purchase ≥ 0.6 × bare hello (same wrk script)",
        ),
        ratio_goal(
            runs,
            "Flask, memcached hit",
            PEER_BEST["Flask, memcached hit"],
            1.0,
            "hot product through Flask ≥ 1.0 × FastAPI + uvicorn peer (its best "
            "of nginx with and without upstream keep-alive)",
        ),
        ratio_goal(
            runs,
            "spillway purchase",
            PEER_BEST["spillway purchase"],
            1.0,
            "purchase ≥ 1.0 × FastAPI + uvicorn peer (its best of nginx with and "
            "without upstream keep-alive)",
        ),
        with_ceiling(
            ratio_goal(
                runs,
                "spillway purchase",
                "naive row-lock purchase",
                10.0,
                "purchase ≥ 10 × the naive row-lock purchase (issue 4)",
            ),
            ratio_goal(
                runs, "bare hello (gevent), same script", "naive row-lock purchase", 10.0, ""
            ),
        ),
        p99_goal(runs, "nginx → memcached", 256, 50),
        p99_goal(runs, "Flask, memcached hit", 256, 50),
        p99_goal(runs, "spillway purchase", 256, 50),
        slow_goal(results.get("slow-isolation", {})),
        *sse_goals(results.get("sse-fanout", {})),
        *drain_goals(results.get("drain", {})),
    ]
    return goals


def slow_goal(slow: dict) -> tuple:
    text = "/demo/index p99 ≤ 50 ms under the slow flood"
    ours = next((row for row in slow.get("rows", []) if row["server"].startswith("spillway")), None)
    if ours is None or ours["index"]["p99_ms"] is None:
        return text, "not measured", UNKNOWN
    index = ours["index"]
    setup = slow["setup"]
    measured = (
        f"{index['p99_ms']:.1f} ms with {ours['slow_open']:,} of "
        f"{setup['slow_requests']:,} × {setup['slow_seconds']} s in flight"
    )
    ok = index["p99_ms"] <= 50 and index["timeouts"] == 0 and index["non_2xx"] == 0
    return text, measured, MET if ok else MISSED


def sse_goals(sse: dict) -> list[tuple]:
    text = "10,000 SSE streams on one worker < 300 MB RSS"
    if "rss_with_streams_mb" not in sse:
        return [(text, "not measured", UNKNOWN)]
    measured = (
        f"{sse['streams']:,} streams: {sse['rss_with_streams_mb']:.0f} MB "
        f"(from {sse['rss_before_mb']:.0f} MB); event p99 {sse['latency_p99_ms']:.0f} ms"
    )
    if sse["streams"] < 10_000:
        return [(text, measured + " — fewer than 10,000 streams (quick)", UNKNOWN)]
    return [(text, measured, MET if sse["rss_with_streams_mb"] < 300 else MISSED)]


DRAIN_RATE = 50_000  # orders/s into each ledger (issue 17)
BURST, BURST_SECONDS = 100_000, 5.0
LEDGERS = ("SQLite", "PostgreSQL")


def drain_goals(drain: dict) -> list[tuple]:
    """Per ledger: the rate from the drain's nudge, and the full burst's time."""
    goals = []
    for ledger in LEDGERS:
        rate_text = f"drain ≥ {DRAIN_RATE:,} orders/s into {ledger}"
        burst_text = f"a {BURST:,}-order burst persisted in < {BURST_SECONDS:g} s into {ledger}"
        run = drain.get(ledger.lower())
        if not run:
            goals += [(rate_text, "not run", UNKNOWN), (burst_text, "not run", UNKNOWN)]
            continue
        goals.append(
            (
                rate_text,
                f"{run['rate_from_start']:,.0f}/s from the nudge "
                f"({run['rate_from_first']:,.0f}/s from the first order persisted)",
                MET if run["rate_from_start"] >= DRAIN_RATE else MISSED,
            )
        )
        measured = f"{run['orders']:,} orders in {run['seconds_from_start']:.1f} s from the nudge"
        if run["orders"] < BURST:
            goals.append((burst_text, measured + " (quick: fewer orders)", UNKNOWN))
            continue
        done = run["persisted"] >= run["orders"]
        goals.append(
            (
                burst_text,
                measured,
                MET if done and run["seconds_from_start"] < BURST_SECONDS else MISSED,
            )
        )
    return goals


def audits_of(results: dict) -> list[dict]:
    found = list(results.get("purchase-burst", {}).get("audits", []))
    for ledger in LEDGERS:
        run = results.get("drain", {}).get(ledger.lower(), {})
        if "audit" in run:
            found.append(run["audit"])
    return found
