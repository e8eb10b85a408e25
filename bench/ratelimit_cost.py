"""What the per-buyer purchase limit costs: purchase throughput with limits on vs off.

Two `spillway up` stacks side by side in one session, identical but for
SPILLWAY_RATE_LIMITS: the "on" stack counts every purchase against the per-buyer limit
(one more redis round trip on the fast path) with limits set so high that nothing is
refused, so only the counting is measured, not refusals. wrk runs alternate off, on, on,
off (the machine's drift weighs on both alike); the best run of each side is compared.

Run from the repository root: ``.venv/bin/python bench/ratelimit_cost.py [--seconds 5]``.
"""

import argparse
import tempfile
from pathlib import Path

from foundation import ms
from foundation import ratio
from foundation import table
from sale import WRK_SCRIPT
from sale import api
from sale import create_sale
from sale import signup_many
from sale import wrk
from foundation import Stack
from tests.servers import free_port

UNLIMITED = {"SPILLWAY_RATE_LIMITS": "on", "SPILLWAY_NGINX_RATE_PER_IP": "1000000r/s",
             "SPILLWAY_NGINX_BURST_PER_IP": "100000",
             "SPILLWAY_RATE_LIMIT_PER_IP": "1000000 per second",
             "SPILLWAY_RATE_LIMIT_PER_BUYER": "1000000 per second"}


def prepare(stack: Stack, work: Path, name: str) -> tuple[str, Path]:
    """A sale with ten million units and 2,000 buyers; the wrk script that buys from it."""
    base = f"http://127.0.0.1:{stack.port}"
    secrets = dict(line.split("=", 1) for line in
                   (stack.run_dir / "secrets.env").read_text().split())
    call, admin = api(base, {"Authorization": f"Bearer {secrets['SPILLWAY_ADMIN_TOKEN']}"})
    sale_id = create_sale(call, admin, stock=10_000_000, per_user_limit=100)
    tokens = ",".join(f'"{t}"' for t in signup_many(call, 2000))
    script = work / f"purchase-{name}.lua"
    script.write_text(WRK_SCRIPT % {"tokens": tokens, "method": "POST",
                                    "body": "'{\"quantity\": 1}'"})
    return f"{base}/api/v1/sales/{sale_id}/orders", script


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="spillway-bench-limits-"))
    work.chmod(0o755)
    stacks = {}
    try:
        for name, env in (("off", {}), ("on", UNLIMITED)):
            run_dir = work / f"run-{name}"
            run_dir.mkdir()
            run_dir.chmod(0o755)
            print(f"starting the limits-{name} stack", flush=True)
            stacks[name] = Stack(run_dir, free_port(), work / f"up-{name}.log",
                                 extra_args=("--seed-demo",), env=env).start()
        targets = {name: prepare(stack, work, name) for name, stack in stacks.items()}
        results = []
        for number, name in enumerate(("off", "on", "on", "off"), 1):
            url, script = targets[name]
            print(f"wrk -c{args.connections} -d{args.seconds}s: limits {name}", flush=True)
            results.append((name, wrk(url, args.connections, args.seconds, script,
                                      run_tag=f"r{number}")))
    finally:
        for stack in stacks.values():
            stack.stop()
    best = {name: max((r for n, r in results if n == name), key=lambda r: r.rps)
            for name in ("off", "on")}
    print(table(["limits", "run req/s", "p50", "p99", "non-2xx"],
                [[n, f"{r.rps:,.0f}", ms(r.p50_ms), ms(r.p99_ms), str(r.non_2xx)]
                 for n, r in results]))
    print(f"\nbest on / best off: {ratio(best['on'].rps, best['off'].rps)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
