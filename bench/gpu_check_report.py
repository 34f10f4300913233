"""The `gpu-check:<device>` section of docs/PERFORMANCE.md, from bench/gpu_check.py's results."""

from __future__ import annotations

import statistics
from typing import Any

VERDICT = {"pass": "pass", "fail": "**fail**", "pending": "pending"}


def _seconds(record: dict[str, Any]) -> str:
    spent = f"{record['seconds']:.0f}" if "seconds" in record else "–"
    return f"{spent} of {record['budget_s']:.0f}"


def _headline(record: dict[str, Any]) -> str:
    """One line of figures per stage, or why there are none."""
    figures = record.get("figures")
    if figures is None:
        return record.get("reason", "")
    name = record["name"]
    if name == "gpu-tests":
        return (
            f"{figures['passed']} passed, {figures['failed']} failed, {figures['error']} errors, "
            f"{figures['skipped']} skipped"
        )
    if name == "concurrent-decode":
        return ", ".join(f"{c['test'].rsplit('::', 1)[-1]}: {c['outcome']}" for c in figures["cases"])
    if name == "ceiling":
        ceiling: dict[str, float] = next(
            (v for k, v in figures["series"].items() if k.startswith("decode + encode")), {}
        )
        points = sorted(ceiling.items(), key=lambda item: int(item[0]))  # JSON keys are strings
        return "decode + encode ceiling: " + ", ".join(f"bs{size} {rate:,.0f} img/s" for size, rate in points)
    if name == "e2e":
        best = max(figures["rows"]["clipserve"], key=lambda r: r["images_per_s"], default=None)
        return (
            ""
            if best is None
            else (
                f"best {best['images_per_s']:,.0f} images/s "
                f"({best['images']} images/request, clients: {best['clients']})"
            )
        )
    if name == "reliability":
        failed = [check for check, held in figures["checks"].items() if not held]
        return "all checks held" if not failed else "not held: " + "; ".join(failed)
    if name == "text-first":
        new, cached = statistics.median(figures["new_s"]), statistics.median(figures["cached_s"])
        return (
            f"1 image + {figures['labels']:,} new labels: {1000 * new:.1f} ms, cached: {1000 * cached:.1f} ms"
        )
    if name == "train-step":
        return "table below"
    if name == "pretrain-step":
        infonce, protoclip = 1000 * figures["infonce_step_s"], 1000 * figures["protoclip_step_s"]
        return f"InfoNCE step {infonce:.0f} ms, ProtoCLIP step {protoclip:.0f} ms"
    return ""


def _train_table(record: dict[str, Any]) -> list[str]:
    if "figures" not in record:
        return []
    lines = [
        "",
        "One training step per method (bench/train_step.py, median):",
        "",
        "| method | stage | batch | classes | step (ms) | peak memory (GiB) |",
        "|---|---|---|---|---|---|",
    ]
    for s in record["figures"]["steps"]:
        ms = "out of memory" if s["median_ms"] is None else f"{s['median_ms']:.1f}"
        peak = "–" if s["peak_gib"] is None else f"{s['peak_gib']:.2f}"
        lines.append(f"| {s['method']} | {s['stage']} | {s['batch']} | {s['classes']} | {ms} | {peak} |")
    return lines


def render(report: dict[str, Any]) -> str:
    device = report["device"]
    smoke = (
        " It is the CPU smoke run (tiny model, seconds per stage): it shows that every stage runs, "
        "not what the H200 does; the goals stay pending."
        if report["smoke"]
        else ""
    )
    lines = [
        f"## The GPU check: every stage and goal in one run ({device})",
        "",
        f'Written by `bench/gpu_check.py` (`make gpu-check`; how to run it: "How to run the GPU check" '
        f"above). {report['seconds']:.0f} s of a {report['budget_s']:.0f} s budget; every stage ran to "
        f"its end: {'yes' if report['ok'] else '**no**'}.{smoke}",
        "",
        "| stage | status | seconds (budget) | figures |",
        "|---|---|---|---|",
    ]
    for record in report["stages"]:
        lines.append(f"| {record['title']} | {record['status']} | {_seconds(record)} | {_headline(record)} |")
    lines += [
        "",
        "Against the goals (issue 7: the H200 goals listed above; issue 16: this check's own):",
        "",
        "| goal | source | measured | verdict |",
        "|---|---|---|---|",
    ]
    for goal in report["goals"]:
        verdict = VERDICT[goal["verdict"]] + (f" ({goal['note']})" if goal["note"] else "")
        lines.append(f"| {goal['goal']} | {goal['source']} | {goal['measured'] or '–'} | {verdict} |")
    lines += _train_table(next((r for r in report["stages"] if r["name"] == "train-step"), {}))
    lines += [
        "",
        f"- machine: {report['machine']}",
        f"- software: {report['software']}",
        f"- date: {report['date']}",
        f"- command: `{report['command']}`",
    ]
    return "\n".join(lines)
