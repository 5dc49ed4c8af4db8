"""`bin/bench`: run the workloads, print a table, write dated JSON (and a PNG chart)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import textwrap
import traceback
from pathlib import Path

import msgspec
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

import actorq

from .flood import flood
from .secure import curve_cost
from .workloads import FULL, QUICK, Figure
from .workloads import WORKLOADS as BASE_WORKLOADS

WORKLOADS = {**BASE_WORKLOADS, "curve": curve_cost, "flood": flood}

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, object]:
    import os

    import msgspec as ms
    import zmq

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "actorq": actorq.__version__, "pyzmq": zmq.__version__, "libzmq": zmq.zmq_version(),
            "msgspec": ms.__version__, "platform": platform.platform()}


def table(figures: list[Figure]) -> Table:
    t = Table(title="actorq benchmark")
    for col in ("workload", "metric", "value", "unit", "target", ""):
        t.add_column(col, justify="right" if col == "value" else "left")
    for f in figures:
        mark = "" if f.met is None else ("[green]met[/]" if f.met else "[red]MISSED[/]")
        value = f"{f.value:,.0f}" if f.value >= 100 else f"{f.value:.3g}"
        t.add_row(f.workload, f.metric, value, f.unit, f.target, mark)
    return t


def chart(figures: list[Figure], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rates = [f for f in figures if f.unit == "tasks/s"]
    if not rates:
        return False
    fig, ax = plt.subplots(figsize=(10, 1.0 + 0.5 * len(rates)))
    # Metric names are sentences: wrapped, they leave the bars most of the width.
    labels = [textwrap.fill(f"{f.workload}: {f.metric}", 44) for f in rates]
    colors = ["#999999" if f.workload.startswith("peer:") else "#3b7dd8" for f in rates]
    bars = ax.barh(labels, [f.value for f in rates], color=colors)
    ax.bar_label(bars, labels=[f"{f.value:,.0f}" for f in rates], padding=3, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")  # peers are 40x+ slower: on a linear axis they would not show
    ax.set_xlim(right=max(f.value for f in rates) * 4)  # room for the value labels
    ax.tick_params(axis="y", labelsize=8)
    ax.set_xlabel("tasks/s (log scale; grey: peers on Redis)")
    ax.set_title("actorq throughput")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bin/bench", description="actorq benchmark harness")
    ap.add_argument("--quick", action="store_true", help="smaller sizes: under a minute")
    ap.add_argument("--only", action="append", choices=sorted(WORKLOADS),
                    help="run just this workload (repeatable)")
    ap.add_argument("--compare", action="store_true",
                    help="also run throughput and latency through Celery, Dramatiq, RQ and Huey "
                    "on a local redis-server, and report actorq's ratio to the best")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where results are written")
    args = ap.parse_args(argv)
    scale = QUICK if args.quick else FULL
    names = args.only or list(WORKLOADS)
    console = Console(stderr=True)
    figures: list[Figure] = []
    failures: dict[str, str] = {}
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        bar = progress.add_task("starting", total=len(names))
        for name in names:
            progress.update(bar, description=f"running {name}")
            try:
                figures += WORKLOADS[name](scale)
            except Exception:
                failures[name] = traceback.format_exc()
                console.print(f"[red]{name} failed:[/]\n{failures[name]}")
            progress.advance(bar)
        if args.compare:
            from .peers import compare, ratios

            progress.update(bar, description="running peers")
            peer_figures, peer_failures = compare(
                2_000 if args.quick else 20_000, 200 if args.quick else 1_000,
                lambda line: console.print(line))
            figures += peer_figures
            failures.update(peer_failures)
            figures += ratios(figures)
    Console(width=max(Console().width, 110)).print(table(figures))
    stamp = dt.datetime.now().strftime("%Y-%m-%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    # Quick and partial (--only) runs are for before/after checks and are not kept in git.
    kind = "-quick" if args.quick else ("-partial" if args.only else "")
    out = args.out / f"{stamp}{kind}.json"
    out.write_text(json.dumps({
        "date": stamp, "quick": args.quick, "command": " ".join(["bin/bench", *sys.argv[1:]]),
        "machine": machine(), "figures": msgspec.to_builtins(figures), "failures": failures,
    }, indent=2))
    console.print(f"results: {out}")
    if chart(figures, out.with_suffix(".png")):
        console.print(f"chart: {out.with_suffix('.png')}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
