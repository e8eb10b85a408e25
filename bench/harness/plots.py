"""PNG plots of one run (matplotlib, Agg backend: no display needed)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from harness.wrk import PERCENTILES  # noqa: E402


def throughput(runs: list[dict], title: str, path: Path) -> Path | None:
    """req/s against connections, one line per target (log scales)."""
    targets = sorted(
        {run["target"] for run in runs if not run["target"].startswith("sell-out")},
        key=lambda t: -max(r["rps"] for r in runs if r["target"] == t),
    )
    if not targets:
        return None
    figure, axes = plt.subplots(figsize=(11, 5.5))
    for index, target in enumerate(targets):
        points = sorted((r["connections"], r["rps"]) for r in runs if r["target"] == target)
        axes.plot(
            [c for c, _ in points], [v for _, v in points], label=target, **style(index, target)
        )
    axes.set_xscale("log", base=2)
    concurrencies = sorted({r["connections"] for r in runs})
    axes.set_xticks(concurrencies, [str(c) for c in concurrencies])
    axes.set_xlabel("concurrent connections (wrk -t2)")
    axes.set_ylabel("requests/s")
    return _save(figure, axes, title, path, "best")


def latency(runs: list[dict], connections: int, title: str, path: Path) -> Path | None:
    """Latency at each percentile wrk reported, one line per target, at one concurrency."""
    chosen = [r for r in runs if r["connections"] == connections and r["percentiles_ms"]]
    if not chosen:
        return None
    labels = [f"{p:g}" for p in PERCENTILES]
    figure, axes = plt.subplots(figsize=(11, 5.5))
    for index, run in enumerate(sorted(chosen, key=lambda r: r["percentiles_ms"].get("99", 0))):
        values = [max(run["percentiles_ms"].get(label, float("nan")), 0.01) for label in labels]
        axes.plot(range(len(labels)), values, label=run["target"], **style(index, run["target"]))
    axes.set_xticks(range(len(labels)), [f"p{label}" for label in labels])
    axes.set_ylabel("latency, ms")
    axes.axhline(50, color="red", linestyle="--", linewidth=1, label="50 ms goal")
    return _save(figure, axes, title, path, "upper left")


def style(index: int, target: str) -> dict:
    """Distinct colours; the peer dashed, the baselines dotted, ours solid."""
    dashes = (
        "--"
        if target.startswith("peer")
        else ":"
        if any(word in target for word in ("sync", "app.run", "naive", "static"))
        else "-"
    )
    return {"color": plt.get_cmap("tab20")(index % 20), "linestyle": dashes, "marker": "o"}


def _save(figure, axes, title: str, path: Path, legend: str) -> Path:
    axes.set_yscale("log")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def draw(results: dict, directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    catalog = results.get("catalog-hot", {}).get("runs", [])
    purchase = results.get("purchase-burst", {}).get("runs", [])
    made = {
        "catalog-throughput": throughput(
            catalog, "catalog-hot: throughput vs concurrency", directory / "catalog-throughput.png"
        ),
        "purchase-throughput": throughput(
            purchase,
            "purchase-burst: throughput vs concurrency",
            directory / "purchase-throughput.png",
        ),
        "catalog-latency": latency(
            catalog,
            256,
            "catalog-hot: latency at 256 connections",
            directory / "catalog-latency-256.png",
        ),
        "purchase-latency": latency(
            [r for r in purchase if not r["target"].startswith("sell")],
            256,
            "purchase-burst: latency at 256 connections",
            directory / "purchase-latency-256.png",
        ),
    }
    return {name: path for name, path in made.items() if path}
