"""bench/results/latest.md and its charts, from the records `bench/run.py` collected.

Charts are PNG, drawn with matplotlib's Agg backend (no display needed): the ratio of
every figure against the alternative a user would pick, Lambda latency against events
per invocation, and the collector's CPU per 1000 input points.
"""

from __future__ import annotations

from pathlib import Path
from textwrap import fill
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator  # noqa: E402

PLAIN = FuncFormatter(lambda value, _: f"{value:g}")

CHARTS = {
    "ratios": "ratios.png",
    "lambda": "lambda_latency.png",
    "collector": "collector_cpu.png",
}


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    size = abs(value)
    if size >= 1000:
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 0.1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def ratio_text(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def _label(record: dict[str, Any]) -> str:
    return f"{record['name']} ({record['unit']})"


def chart_ratios(records: list[dict[str, Any]], path: Path) -> bool:
    rows = [r for r in records if r["ratio"] is not None]
    if not rows:
        return False
    rows.reverse()  # matplotlib draws the first bar at the bottom
    height = max(2.5, 0.5 * len(rows) + 1.2)
    fig, ax = plt.subplots(figsize=(12, height))
    ratios = [r["ratio"] for r in rows]
    colors = ["#2a9d8f" if x >= 1 else "#e76f51" for x in ratios]
    labels = [f"{fill(_label(r), 48)}\nvs {next(iter(r['alternatives']))}" for r in rows]
    bars = ax.barh(range(len(rows)), ratios, color=colors)
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(PLAIN)
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda value, _: ""))
    ax.axvline(1, color="black", linewidth=0.8)
    for bar, value in zip(bars, ratios, strict=True):
        ax.text(
            value, bar.get_y() + bar.get_height() / 2, f" {value:.2f}x", va="center", fontsize=7
        )
    ax.set_xlabel("times better than the alternative (log scale; right of 1 = doow-otel better)")
    ax.set_title("doow-otel against the alternative a user would pick, one run")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def chart_lambda(records: list[dict[str, Any]], path: Path) -> bool:
    rows = [r for r in records if r["group"] in ("lambda_wall", "lambda_extension_wall")]
    if not rows:
        return False
    series: dict[str, dict[int, float]] = {}  # strategy -> events per invocation -> ms
    for r in rows:
        events = r["params"]["events_per_invocation"]
        series.setdefault(r["ours_label"], {})[events] = r["ours"]
        for name, value in r["alternatives"].items():
            series.setdefault(name, {}).setdefault(events, value)
    ours = {r["ours_label"] for r in rows}
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for name, points in series.items():
        xs, ys = zip(*sorted(points.items()), strict=True)
        ax.plot(xs, ys, marker="o", linewidth=2.5 if name in ours else 1.2)
    latency = rows[0]["params"].get("server_latency_ms")
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(PLAIN)
        axis.set_minor_formatter(FuncFormatter(lambda value, _: ""))
    ax.set_xlabel("usage events per invocation")
    ax.set_ylabel("added wall ms per warm invocation")
    ax.set_title(f"Lambda: latency added by metering (server answers in {latency:.0f} ms)")
    ax.legend(list(series), fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def chart_collector(records: list[dict[str, Any]], path: Path) -> bool:
    rows = [
        r
        for r in records
        if r["group"] == "collector" and r["name"].startswith("collector CPU per 1000")
    ]
    if not rows:
        return False
    record = rows[0]
    names = [r["ours_label"] for r in rows] + list(record["alternatives"])
    values = [r["ours"] for r in rows] + list(record["alternatives"].values())
    fig, ax = plt.subplots(figsize=(7, 3.6))
    colors = ["#2a9d8f"] * len(rows) + ["#8d99ae"] * len(record["alternatives"])
    bars = ax.bar(names, values, color=colors)
    ax.tick_params(axis="x", labelsize=7)
    for bar, value in zip(bars, values, strict=True):
        ax.text(bar.get_x() + bar.get_width() / 2, value, fmt(value), ha="center", va="bottom")
    ax.set_ylabel(record["unit"])
    ax.set_title("otelcol-doow: collector CPU per 1000 input usage points (lower is better)")
    ax.title.set_fontsize(9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _delivered(record: dict[str, Any]) -> str:
    return "yes" if record["delivered_ok"] else "**NO**"


def _goal(record: dict[str, Any]) -> str:
    if not record["goal"]:
        return ""
    return f"{record['goal']} ({'met' if record['goal_met'] else 'NOT met'})"


def markdown(result: dict[str, Any], charts: dict[str, bool], outputs: dict[str, str]) -> str:
    records = result["records"]
    machine = result["machine"]
    lines = [
        "# Benchmarks: the latest run",
        "",
        f"`{result['command']}` at {result['generated_at']}, commit {machine['commit']}. "
        "What each figure measures and why its alternative is the fair one: "
        "[docs/benchmarks.md](../../docs/benchmarks.md).",
        "",
    ]
    if result["quick"]:
        lines += ["**A quick run (small counts): a smoke check, its figures mean little.**", ""]
    lines += [
        "Ratios from one run on one machine are the headline: every figure and its "
        "alternatives ran side by side, minutes apart. A ratio is how many times better "
        "doow-otel is (above 1: better, whichever way the unit points). Absolute figures "
        "hold for this machine only:",
        "",
        "| machine | |",
        "|---|---|",
    ]
    lines += [f"| {key.replace('_', ' ')} | {value} |" for key, value in machine.items()]
    lines += [
        "",
        "Every figure checks that what it measured was delivered (the server's or the "
        "sink's totals); *delivered* says whether all of doow-otel's usage arrived.",
        "",
        "## Headline",
        "",
    ]
    if charts.get("ratios"):
        lines += [f"![ratios]({CHARTS['ratios']})", ""]
    lines += [
        "| figure | doow-otel | alternative | its figure | ratio | delivered | goal |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in records:
        first = next(iter(r["alternatives"].items()), None)
        alternative, value = first if first else ("-", None)
        lines.append(
            f"| {r['name']} ({r['unit']}, {r['better']} is better) | {fmt(r['ours'])} "
            f"| {alternative} | {fmt(value)} | {ratio_text(r['ratio'])} "
            f"| {_delivered(r)} | {_goal(r)} |"
        )
    lines += ["", "## Every figure, every alternative", ""]
    for bench in result["benchmarks"]:
        name = bench["name"]
        state = bench["status"] + (f": {bench['reason']}" if bench["reason"] else "")
        lines += [f"### {name} ({state}, {bench['seconds']:.1f} s)", ""]
        mine = [r for r in records if r["benchmark"] == name]
        if not mine:
            continue
        lines += [
            "| figure | unit | doow-otel | alternatives (ratio) | notes |",
            "|---|---|---|---|---|",
        ]
        for r in mine:
            alternatives = "<br>".join(
                f"{alt}: {fmt(value)} ({ratio_text(r['ratios'].get(alt))})"
                for alt, value in r["alternatives"].items()
            )
            lines.append(
                f"| {r['name']} | {r['unit']} | {r['ours_label']}: {fmt(r['ours'])} "
                f"| {alternatives or '-'} | {r['note']} |"
            )
        lines.append("")
    if charts.get("lambda"):
        lines += ["## Lambda latency against events per invocation", ""]
        lines += [f"![lambda latency]({CHARTS['lambda']})", ""]
    if charts.get("collector"):
        lines += ["## Collector CPU per 1000 input points", ""]
        lines += [f"![collector CPU]({CHARTS['collector']})", ""]
    lines += ["## Raw output", ""]
    for name, output in outputs.items():
        lines += [f"<details><summary>{name}</summary>", "", "```", output.strip(), "```", ""]
        lines += ["</details>", ""]
    return "\n".join(lines)


def write_report(result: dict[str, Any], outputs: dict[str, str], out: Path) -> None:
    records = result["records"]
    charts = {
        "ratios": chart_ratios(records, out / CHARTS["ratios"]),
        "lambda": chart_lambda(records, out / CHARTS["lambda"]),
        "collector": chart_collector(records, out / CHARTS["collector"]),
    }
    for key, drawn in charts.items():  # bench/results holds only the latest run
        if not drawn:
            (out / CHARTS[key]).unlink(missing_ok=True)
    result["charts"] = [CHARTS[key] for key, drawn in charts.items() if drawn]
    (out / "latest.md").write_text(markdown(result, charts, outputs))
