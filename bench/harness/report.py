"""The Markdown report of one run (and the JSON it is rendered from); the tables and the
results files of the standalone benches."""

import datetime
import os
from pathlib import Path

from harness.facts import git
from harness.goals import CEILING
from harness.goals import MISSED
from harness.goals import PEER_OF
from harness.goals import audits_of
from harness.goals import evaluate

RED = "🟥"
RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"


def ms(value: float | None) -> str:
    if value is None:
        return "–"
    if value < 10:
        return f"{value:.2f}"
    return f"{value:.1f}" if value < 1000 else f"{value:,.0f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def when_and_where(load_before: float) -> str:
    """The run line atop a standalone bench's report: date, commit, cores, load."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        f"run: {now:%Y-%m-%d %H:%M} UTC, commit {git('rev-parse', '--short', 'HEAD')}, "
        f"{os.cpu_count()} cores shared, load average {load_before:.1f} before / "
        f"{os.getloadavg()[0]:.1f} after"
    )


def publish(name: str, text: str) -> None:
    """A standalone bench's report: printed, and kept as bench/results/NAME.md."""
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / f"{name}.md").write_text(text)
    print(text)


def ratio(top: float | None, bottom: float | None) -> str:
    return f"{top / bottom:.2f}" if top and bottom else "–"


def runs_table(runs: list[dict], ceilings: dict[int, float], peer_of: dict) -> str:
    by_key = {(r["target"], r["connections"]): r for r in runs}
    rows = []
    for run in sorted(runs, key=lambda r: (r["connections"], -r["rps"])):
        peer = by_key.get((peer_of.get(run["target"]), run["connections"]))
        refused = sum(n for s, n in run["statuses"].items() if s.startswith("4"))
        rows.append(
            [
                str(run["connections"]),
                run["target"],
                f"{run['rps']:,.0f}",
                ms(run["p50_ms"]),
                ms(run["p99_ms"]),
                f"{run['errors']}" + (f" ({run['timeouts']} t/o)" if run["timeouts"] else ""),
                f"{refused:,}" if run["statuses"] else "–",
                ratio(run["rps"], ceilings.get(run["connections"])),
                ratio(run["rps"], peer["rps"]) if peer else "–",
                f"{run['cpu_us_per_request']:.0f}"
                if (run.get("cpu_us_per_request") or 0) > 0
                else "–",
            ]
        )
    return table(
        [
            "conns",
            "target",
            "req/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "4xx",
            "× ceiling",
            "× peer",
            "server CPU µs/req",
        ],
        rows,
    )


COST_PAIRS = [
    ("Flask, memcached hit", "peer: product, memcached"),
    ("Flask, memcached hit, keep-alive", "peer: product, memcached, keep-alive"),
    ("bare hello (gevent)", "peer: hello"),
    ("spillway purchase", "peer purchase"),
    ("spillway purchase", "peer purchase, keep-alive"),
]


def cost_table(results: dict) -> str:
    """Server CPU per request, ours beside the peer's, where both were measured."""
    runs = {
        (r["target"], r["connections"]): r
        for scenario in ("catalog-hot", "purchase-burst")
        for r in results.get(scenario, {}).get("runs", [])
    }
    rows = []
    for ours, peer in COST_PAIRS:
        for connections in sorted({c for _, c in runs}):
            a, b = runs.get((ours, connections)), runs.get((peer, connections))
            if (
                a
                and b
                and (a.get("cpu_us_per_request") or 0) > 0
                and (b.get("cpu_us_per_request") or 0) > 0
            ):
                rows.append(
                    [
                        str(connections),
                        ours,
                        f"{a['cpu_us_per_request']:.0f}",
                        peer,
                        f"{b['cpu_us_per_request']:.0f}",
                        ratio(b["cpu_us_per_request"], a["cpu_us_per_request"]),
                    ]
                )
    if not rows:
        return "Not measured."
    return table(
        ["conns", "ours", "CPU µs/req", "peer", "CPU µs/req", "peer ÷ ours (> 1: we are cheaper)"],
        rows,
    )


def ceilings_of(results: dict) -> dict[int, float]:
    return {
        r["connections"]: r["rps"]
        for r in results.get("catalog-hot", {}).get("runs", [])
        if r["target"] == CEILING
    }


def facts_section(facts: dict, profile: str, argv: str) -> str:
    packages = ", ".join(f"{name} {version}" for name, version in facts["packages"].items())
    rows = [
        ["date", facts["date"]],
        ["commit", facts["commit"]],
        ["mode", profile],
        ["command", f"`{argv}`"],
        ["CPU", f"{facts['cores']} cores, {facts['cpu']}, {facts['memory_gb']} GB RAM"],
        ["kernel / Python", f"{facts['kernel']} / {facts['python']}"],
        [
            "servers",
            f"nginx {facts['nginx']}, redis {facts['redis']}, memcached "
            f"{facts['memcached']}, wrk {facts['wrk']}",
        ],
        ["Python packages", packages],
        [
            "load average",
            f"{facts['load_average_before']} before, {facts.get('load_average_after', '?')} after",
        ],
    ]
    return table(["", ""], rows)


def audit_section(audits: list[dict]) -> str:
    if not audits:
        return "No burst was audited in this run."
    rows = []
    for audited in audits:
        verdict = (
            "ok" if audited["ok"] else f"{RED} **VIOLATED**: " + "; ".join(audited["failures"])
        )
        rows.append(
            [
                audited["burst"],
                audited["sale_id"],
                f"{audited['accepted']:,}",
                f"{audited['persisted']:,}",
                str(audited["unanswered"]),
                f"{audited['drain_wait_s']:.1f}",
                verdict,
            ]
        )
    return (
        table(
            [
                "burst",
                "sale",
                "202 answers",
                "orders in SQLite",
                "orders whose 202 wrk never read",
                "drain wait s",
                "invariants",
            ],
            rows,
        )
        + "\n\nChecked after each burst, once the outbox drained: units in 202s ≤ stock, "
        "remaining ≥ 0; every 202 order id in the database once with quantity 1; "
        "stock = remaining + live units; per-buyer limit; one order per "
        "Idempotency-Key (every tenth request replays an earlier key); no 5xx; "
        "the reconciler (what `spillway reconcile SALE` runs) finds no drift; "
        "50 of the 202 ids read back through "
        "`GET /api/v1/orders/{id}` as confirmed."
    )


def slow_section(slow: dict) -> str:
    if not slow.get("rows"):
        return "Not run."
    setup = slow["setup"]
    rows = [
        [
            row["server"],
            f"{row['slow_open']:,}",
            f"{row['index']['rps']:,.0f}",
            ms(row["index"]["p50_ms"]),
            ms(row["index"]["p99_ms"]),
            str(row["index"]["timeouts"] + row["index"]["socket_errors"]),
            f"{row['slow']['requests']:,}",
            str(row["slow"]["timeouts"]),
        ]
        for row in slow["rows"]
    ]
    return (
        f"{setup['slow_requests']:,} × `/demo/slow?seconds={setup['slow_seconds']}` held by "
        f"one wrk for {setup['hold_seconds']} s; `/demo/index` measured by a second wrk "
        f"(-c8, {setup['index_seconds']} s) meanwhile.\n\n"
        + table(
            [
                "server",
                "slow conns open",
                "index req/s",
                "index p50 ms",
                "index p99 ms",
                "index errors",
                "slow completed",
                "slow timeouts",
            ],
            rows,
        )
    )


def drain_section(drain: dict) -> str:
    runs = [drain[name] for name in ("sqlite", "postgresql") if name in drain]
    if not runs:
        return "Not run."
    lines = [
        f"{runs[0]['orders']:,} reservations queued in the outbox by reserve.lua with Celery "
        "beat stopped and the worker up and idle, then the nudge a reservation into an idle "
        "outbox sends, and beat started (a drainer more a second). The same into a PostgreSQL "
        "ledger on a stack of its own (a cluster as durable as the SQLite ledger: "
        "synchronous_commit off, fsync on).",
        "",
    ]
    for run in runs:
        early = run.get("persisted_before_the_drain", 0)
        lines.append(
            f"- {run['ledger']}: {run['persisted']:,} orders after "
            f"**{run['seconds_from_start']:.1f} s** from the nudge "
            f"(**{run['rate_from_start']:,.0f} orders/s**), {run['seconds_from_first']:.1f} s "
            f"from the first order persisted ({run['rate_from_first']:,.0f}/s)"
            + (f"; {early:,} were persisted before the nudge" if early else "")
            + cpu_per_order(run.get("cpu_us_per_order", {}))
            + "."
        )
    return "\n".join(lines)


def cpu_per_order(used: dict) -> str:
    """'; CPU per order: the Celery worker 31 µs, redis 22 µs, …' (from /proc)."""
    if not used:
        return ""
    names = {"celery-worker": "the Celery worker", "redis": "redis", "database": "PostgreSQL"}
    return "; CPU per order: " + ", ".join(
        f"{names.get(name, name)} {us:.0f} µs" for name, us in used.items()
    )


def sse_section(sse: dict) -> str:
    if "streams" not in sse:
        return "Not run."
    keys = (
        "streams",
        "rss_before_mb",
        "rss_with_streams_mb",
        "latency_p50_ms",
        "latency_p99_ms",
        "events_received",
    )
    return "`bench/sse_fanout.py`'s measurement (its own stack, ours stopped first):\n\n" + table(
        list(keys), [[str(sse.get(k, "–")) for k in keys]]
    )


HOW = """\
- **stack**: `spillway up --seed-demo --web-workers 2` on free ports, `SPILLWAY_RATE_LIMITS=off`:
  nginx → gunicorn `-k gevent -w 2` on a unix socket (no upstream keep-alive, as shipped),
  redis and memcached on unix sockets, a Celery worker and beat persisting the outbox.
- **peer**: `bench/peer/app.py`, FastAPI on `uvicorn --workers 2 --loop uvloop --http
  httptools --no-access-log` on a unix socket, behind an nginx proxying exactly like ours
  (HTTP/1.1, no upstream keep-alive, buffered access log). The product GET reads the same
  memcached key (aiomcache), the same SQLite file on a miss; the purchase checks the same
  signed token and runs the same reserve.lua with the same keys on the same redis, so its
  reservations are persisted by our Celery worker and audited like ours.
- **baselines**: nginx serving a static file (the ceiling); `/demo/index` on the same
  gunicorn; the seed's `app.run()` (bench/naive_seed_app.py) and gunicorn sync ×2 running
  our app, both direct; the naive row-lock purchase (bench/naive_purchase_app.py, one
  `BEGIN IMMEDIATE` transaction per purchase on SQLite, gunicorn gevent ×2) behind nginx.
- **load**: `wrk -t2 --latency --timeout 2s` from the same 2 cores; GETs with a Lua `done()`
  only; purchases with a script rotating the buyers' tokens, a fresh Idempotency-Key per
  request and every tenth request a replay, recording the order id of every 200/202. Each
  purchase run gets its own sale (10,000,000 units, 100 per buyer); the sell-out bursts
  have few units, 2 per buyer. Target order alternates between concurrencies.
- "errors": timeouts + socket errors + 5xx (for GETs: any non-2xx); "4xx": refusals (409
  sold out / limit) — expected in sell-outs. "× ceiling": req/s ÷ nginx static at the same
  concurrency; "× peer": ÷ the peer's path doing the same work (product GET ÷ peer product
  GET, purchase ÷ peer purchase, hello ÷ peer hello, each through the same nginx config).
  The "keep-alive" rows go through a second nginx with `keepalive 64` upstream: the peer's
  best configuration, and what pooling would do to ours (more req/s, a long tail: see
  research/perf-baselines.md, pitfall 4). The peer goals compare with the peer's best.
- "server CPU µs/req": user + system CPU of the serving process tree (gunicorn master and
  workers, uvicorn's, nginx's for the nginx-only paths; not redis, memcached or Celery)
  over the run, per request answered — the cost of a request, which other load on a
  shared machine disturbs far less than req/s.
- bench/FINDINGS.md: where our per-request time goes, and the keep-alive tail experiments.
- **p99 at 256 connections**: wrk keeps 256 requests in flight, so by Little's law the mean
  latency is 256 ÷ throughput (the goal's 50 ms needs > 5,100 req/s before any tail); the
  goals table shows that floor beside each p99.
"""


def render(
    results: dict,
    facts: dict,
    profile: str,
    argv: str,
    plots: dict[str, Path],
    report_path: Path,
    crashed: list[str],
) -> str:
    audits = audits_of(results)
    violated = [a for a in audits if not a["ok"]]
    goals = evaluate(results)
    ceilings = ceilings_of(results)
    lines = [f"# Spillway benchmark ({profile})", ""]
    lines.append(
        "> Measured on a **shared, noisy machine** (other sessions were running tests "
        "meanwhile), with wrk on the same cores as the servers: only the ratios "
        "between measurements of this one run mean anything."
    )
    lines.append("")
    for audited in violated:
        lines.append(
            f"{RED} **INVARIANT VIOLATED — {audited['burst']} (sale "
            f"{audited['sale_id']})**: {'; '.join(audited['failures'])}"
        )
        lines.append("")
    for failure in crashed:
        lines.append(f"{RED} **SCENARIO FAILED**: {failure}")
        lines.append("")
    if audits and not violated:
        lines += [f"All {len(audits)} audited bursts kept every invariant.", ""]
    lines += [
        "## Machine",
        "",
        facts_section(facts, profile, argv),
        "",
        "## Goals (issue 5)",
        "",
        table(["goal", "measured", ""], [list(goal) for goal in goals]),
        "",
        f"{sum(g[2] == '✔' for g in goals)} met, {sum(g[2] == MISSED for g in goals)} "
        f"missed, {sum(g[2] not in ('✔', MISSED) for g in goals)} not judged.",
        "",
        "### Cost per request, ours beside the peer's",
        "",
        'Server CPU per request answered (see "How it ran"): steadier than req/s '
        "when other work shares the machine.",
        "",
        cost_table(results),
        "",
    ]

    def plot(name: str, alt: str) -> list[str]:
        if name not in plots:
            return []
        return [f"![{alt}]({plots[name].relative_to(report_path.parent).as_posix()})", ""]

    catalog = results.get("catalog-hot", {}).get("runs", [])
    lines += [
        "## catalog-hot",
        "",
        "The three paths of a hot product GET (`/api/v1/products/1` through nginx: "
        "nginx→memcached; `?via=app`: Flask's memcached hit; `?via=db` with the admin's "
        "`Cache-Control: no-cache`: Flask from SQLite) beside the ceilings.",
        "",
        runs_table(catalog, ceilings, PEER_OF) if catalog else "Not run.",
        "",
        *plot("catalog-throughput", "catalog throughput"),
        *plot("catalog-latency", "catalog latency at 256 connections"),
    ]
    purchase = results.get("purchase-burst", {}).get("runs", [])
    lines += [
        "## purchase-burst",
        "",
        "`POST /api/v1/sales/{id}/orders` through nginx; the bare view runs with the "
        "same wrk script (same per-request Lua cost).",
        "",
        runs_table(purchase, ceilings, PEER_OF) if purchase else "Not run.",
        "",
        *plot("purchase-throughput", "purchase throughput"),
        *plot("purchase-latency", "purchase latency at 256 connections"),
        "### Audits",
        "",
        audit_section(audits),
        "",
    ]
    lines += [
        "## slow-isolation",
        "",
        slow_section(results.get("slow-isolation", {})),
        "",
        "## drain",
        "",
        drain_section(results.get("drain", {})),
        "",
        "## sse-fanout",
        "",
        sse_section(results.get("sse-fanout", {})),
        "",
        "## How it ran",
        "",
        HOW,
    ]
    return "\n".join(lines)
