"""``python -m harness`` (with bench/ on the path), which is what ``spillway bench`` and
``make bench`` run. See ``--help``."""

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(BENCH_DIR), str(BENCH_DIR.parent)]  # harness; tests (servers, audit)

from harness import facts as machine  # noqa: E402
from harness import report  # noqa: E402
from harness.goals import audits_of  # noqa: E402
from harness.lab import Lab  # noqa: E402
from harness.lab import install_sigterm  # noqa: E402
from harness.progress import Progress  # noqa: E402
from harness.scenarios import FULL  # noqa: E402
from harness.scenarios import QUICK  # noqa: E402
from harness.scenarios import SCENARIOS  # noqa: E402
from harness.scenarios import estimate  # noqa: E402


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="spillway bench",
        description="Start the stack with its baselines and the FastAPI peer on free ports, "
        "run the scenarios, audit the invariants, write the report.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="short runs, fewer concurrencies: the whole run in under 3 minutes",
    )
    parser.add_argument(
        "--only", default="", help=f"comma-separated scenarios, of: {', '.join(SCENARIOS)}"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="directory of report.md, report.json and plots/ "
        "[default: bench/ (full), bench/quick/ (quick)]",
    )
    parser.add_argument(
        "--keep-work",
        action="store_true",
        help="keep the work directory (run dir, logs, wrk id files)",
    )
    options = parser.parse_args(argv)
    chosen = [name.strip() for name in options.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown:
        parser.error(
            f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}"
        )
    options.scenarios = [name for name in SCENARIOS if not chosen or name in chosen]
    if options.out is None:
        options.out = BENCH_DIR / ("quick" if options.quick else "")
    return options


# What the bench extra installs (`make bench` does): the peer, its client, the plots.
BENCH_EXTRA = ("matplotlib", "fastapi", "uvicorn", "aiomcache")


def missing_bench_extra() -> list[str]:
    import importlib.util

    return [name for name in BENCH_EXTRA if importlib.util.find_spec(name) is None]


def main(argv: list[str] | None = None) -> int:
    options = parse(sys.argv[1:] if argv is None else argv)
    missing = missing_bench_extra()
    if missing:
        print(
            f"spillway bench: {', '.join(missing)} missing; run `make bench`, or "
            f"`pip install -e '.[bench]'` in this venv",
            file=sys.stderr,
        )
        return 2
    install_sigterm()
    profile = QUICK if options.quick else FULL
    command = "spillway bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    facts = machine.collect()
    work = Path(tempfile.mkdtemp(prefix="spillway-bench-"))
    work.chmod(0o755)  # the stack's processes run as the spillway user
    lab = Lab(work)
    progress = Progress({name: estimate(name, profile) for name in options.scenarios})
    print(
        f"spillway bench ({profile.name}): {', '.join(options.scenarios)}; "
        f"about {sum(progress.estimates.values()) / 60:.0f} min; work dir {work}",
        flush=True,
    )
    results: dict = {}
    crashed: list[str] = []
    interrupted = False
    try:
        for name in options.scenarios:
            progress.scenario(name)
            started = time.monotonic()
            try:
                SCENARIOS[name](lab, profile, progress, results.setdefault(name, {}))
            except Exception as exc:  # noqa: BLE001  (report it, run the other scenarios)
                traceback.print_exc()
                crashed.append(f"{name}: {type(exc).__name__}: {exc}"[:600])
            results[name]["seconds"] = round(time.monotonic() - started, 1)
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C, or SIGTERM (install_sigterm)
        interrupted = True
        crashed.append("interrupted (Ctrl-C or SIGTERM): the report is partial")
    finally:
        progress.step("stopping every process this run started")
        lab.stop_all()
    facts["load_average_after"] = round(os.getloadavg()[0], 2)
    path = write(options, profile.name, command, facts, results, crashed)
    violated = [a for a in audits_of(results) if not a["ok"]]
    print(
        f"\nreport: {path}  (raw: {path.with_suffix('.json')}; took "
        f"{time.monotonic() - progress.started:.0f} s)"
    )
    if violated or crashed:
        for audited in violated:
            print(
                f"\033[1;31mINVARIANT VIOLATED: {audited['burst']}: "
                f"{'; '.join(audited['failures'])}\033[0m",
                file=sys.stderr,
            )
        for failure in crashed:
            print(f"\033[1;31mFAILED: {failure}\033[0m", file=sys.stderr)
        print(f"logs kept in {work}", file=sys.stderr)
        return 130 if interrupted else 1
    if not options.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def write(
    options, profile: str, command: str, facts: dict, results: dict, crashed: list[str]
) -> Path:
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    report_path = out / "report.md"
    from harness import plots  # matplotlib: only once there is something to draw

    drawn = plots.draw(results, out / "plots")
    report_path.write_text(
        report.render(results, facts, profile, command, drawn, report_path, crashed)
    )
    report_path.with_suffix(".json").write_text(
        json.dumps(
            {
                "profile": profile,
                "command": command,
                "facts": facts,
                "results": results,
                "crashed": crashed,
                "audits_ok": all(a["ok"] for a in audits_of(results)),
            },
            indent=1,
            default=str,
        )
    )
    return report_path


if __name__ == "__main__":
    sys.exit(main())
