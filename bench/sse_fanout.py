"""Live-stock fan-out benchmark: N server-sent-event streams held by ONE gevent worker, on
a stack of its own (harness/sse.py says what is measured, and how).

Run from the repository root::

    .venv/bin/python bench/sse_fanout.py                  # 10,000 streams
    .venv/bin/python bench/sse_fanout.py --quick          # 1,000 streams
    .venv/bin/python bench/sse_fanout.py --streams 5000 --json out.json

`spillway bench` runs the same measurement as its sse-fanout scenario. Everything it
starts is stopped when it ends, however it ends.
"""

import argparse
import json
import sys
from pathlib import Path

from harness import sse
from harness.lab import session


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=None, help="streams to open (10,000)")
    parser.add_argument("--quick", action="store_true", help="1,000 streams, 5 purchases")
    parser.add_argument(
        "--purchases",
        type=int,
        default=None,
        help="purchases whose events are timed (10; 5 with --quick)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    streams = args.streams or (1000 if args.quick else 10_000)
    with session("sse", stack_args=sse.stack_args(streams)) as lab:
        figures = sse.measure(lab, streams, args.purchases or (5 if args.quick else 10))
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
