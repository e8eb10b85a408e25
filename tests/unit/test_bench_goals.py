"""The bench report's verdicts, from made-up runs (the harness's pure judging code)."""

from bench.harness import goals


def run(target: str, connections: int, rps: float) -> dict:
    return {"target": target, "connections": connections, "rps": rps, "p99_ms": 10.0, "timeouts": 0}


def purchase_runs(purchase: float, hello: float, naive: float) -> dict:
    return {
        "purchase-burst": {
            "runs": [
                run("spillway purchase", 64, purchase),
                run("bare hello (gevent), same script", 64, hello),
                run("naive row-lock purchase", 64, naive),
            ]
        }
    }


def verdict(results: dict, starts: str) -> tuple:
    return next(goal for goal in goals.evaluate(results) if goal[0].startswith(starts))


def test_purchase_ratio_to_bare_hello_is_judged_per_concurrency():
    assert verdict(purchase_runs(3300, 5000, 1000), "purchase ≥ 0.6")[1:] == (
        "c64: 0.66",
        goals.MET,
    )
    assert verdict(purchase_runs(2900, 5000, 1000), "purchase ≥ 0.6")[2] == goals.MISSED


def test_the_naive_goal_shows_the_bare_hellos_ceiling_beside_it():
    text, measured, mark = verdict(purchase_runs(3000, 4400, 1000), "purchase ≥ 10")
    assert mark == goals.MISSED
    assert measured == "c64: 3.00 (ceiling on this machine, bare hello ÷ naive: c64: 4.40)"


def test_unmeasured_goals_are_not_judged():
    assert verdict({}, "purchase ≥ 10")[1:] == ("not measured", goals.UNKNOWN)
