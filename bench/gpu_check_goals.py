"""The goals the GPU check is judged against: issue 7's H200 goals (docs/PERFORMANCE.md, "Pending:
the H200 runs") and issue 16's checks, each as pass, fail or pending.

Pending: the stage did not produce the figure (failed, timed out, skipped, the cell not run), or
the run was the CPU smoke run, where the figures only show that the code runs (the thresholds are
H200 figures). The thresholds are the benches' own (bench/e2e.py Goals, bench/text_first_request_report).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from bench.e2e import Goals
from bench.text_first_request_report import GOAL_S

E2E = Goals()
LABELS = 10  # the e2e stage's labels per request
MEMORY_GROWTH = 0.05  # bench/reliability.py: GPU memory growth <= 5% after warm-up


@dataclass(frozen=True)
class Goal:
    goal: str
    source: str  # "issue 7" or "issue 16"
    stage: str
    measured: str  # "" when not measured
    verdict: str  # "pass" | "fail" | "pending"
    note: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


# A check takes the stage's figures and returns (measured text, held), or None when this run has
# no such figure (the cell was not measured).
Check = Callable[[dict[str, Any]], "tuple[str, bool] | None"]


def _row(rows: list[dict[str, Any]], images: int, clients: int) -> dict[str, Any] | None:
    return next(
        (r for r in rows if (r["images"], r["labels"], r["clients"]) == (images, LABELS, clients)), None
    )


def gpu_tests(figures: dict[str, Any]) -> tuple[str, bool]:
    measured = (
        f"{figures['passed']} passed, {figures['failed']} failed, {figures['error']} errors, "
        f"{figures['skipped']} skipped"
    )
    return measured, figures["passed"] > 0 and not (figures["failed"] or figures["error"])


def concurrent_decode(figures: dict[str, Any]) -> tuple[str, bool] | None:
    outcomes = [case["outcome"] for case in figures["cases"]]
    if all(outcome == "skipped" for outcome in outcomes):
        return None
    return ", ".join(outcomes), all(outcome == "passed" for outcome in outcomes)


def best_32(figures: dict[str, Any]) -> tuple[str, bool] | None:
    best = max((r["images_per_s"] for r in figures["rows"]["clipserve"] if r["images"] == 32), default=None)
    return None if best is None else (f"{best:.0f} images/s", best >= E2E.images_per_s_32)


def share_of_ceiling(figures: dict[str, Any]) -> tuple[str, bool] | None:
    ceiling = figures.get("ceiling_at_32")
    best = max((r["images_per_s"] for r in figures["rows"]["clipserve"] if r["images"] == 32), default=None)
    if not ceiling or best is None:
        return None
    return f"{100 * best / ceiling:.0f}% ({best:.0f} of {ceiling:.0f} images/s)", best >= 0.7 * ceiling


def many_clients(figures: dict[str, Any]) -> tuple[str, bool] | None:
    if (row := _row(figures["rows"]["clipserve"], 1, 256)) is None:
        return None
    held = row["ok_per_s"] >= E2E.single_requests_per_s_256 and row["p99_ms"] <= E2E.single_p99_ms_256
    return f"{row['ok_per_s']:.0f} req/s, p99 {row['p99_ms']:.1f} ms", held


def one_client(figures: dict[str, Any]) -> tuple[str, bool] | None:
    row = _row(figures["rows"]["clipserve"], 1, 1)
    if row is None or row["server_p50_ms"] != row["server_p50_ms"]:  # NaN: no Server-Timing
        return None
    return f"{row['server_p50_ms']:.2f} ms", row["server_p50_ms"] <= E2E.single_server_p50_ms_1


def over_baseline(figures: dict[str, Any]) -> tuple[str, bool] | None:
    ours, theirs = _row(figures["rows"]["clipserve"], 1, 64), _row(figures["rows"]["baseline"], 1, 64)
    if ours is None or theirs is None or theirs["images_per_s"] <= 0:
        return None
    ratio = ours["images_per_s"] / theirs["images_per_s"]
    measured = f"{ratio:.1f}x ({ours['images_per_s']:.0f} vs {theirs['images_per_s']:.1f} images/s)"
    return measured, ratio >= E2E.over_baseline_at_64


def first_request(figures: dict[str, Any]) -> tuple[str, bool]:
    added = statistics.median(figures["new_s"]) - statistics.median(figures["cached_s"])  # as the bench's
    return f"{1000 * added:.1f} ms added by {figures['labels']:,} new labels", added <= GOAL_S


def memory_flat(figures: dict[str, Any]) -> tuple[str, bool] | None:
    growth = figures["gpu_reserved_growth"]
    if growth is None:  # the gauge exists on CUDA only
        return None
    measured = f"{100 * growth:.1f}% over {figures['gpu_reserved_mb_after_warmup']:.0f} MiB reserved"
    return measured, growth <= MEMORY_GROWTH


def hot_swap(figures: dict[str, Any]) -> tuple[str, bool]:
    failed, requests = figures["hot_swap_failed_requests"], figures["hot_swap_requests"]
    return f"{failed} failed of {requests} during {figures['hot_swap_good_swaps']} swaps", failed == 0


def train_steps(figures: dict[str, Any]) -> tuple[str, bool]:
    steps = figures["steps"]
    out = [f"{s['method']}/{s['stage']}" for s in steps if s["median_ms"] is None]
    return (f"out of memory: {', '.join(out)}" if out else f"{len(steps)} steps ran"), not out


GOALS: list[tuple[str, str, str, Check]] = [  # goal, source, stage, check
    ("every gpu-marked test passes", "issue 16", "gpu-tests", gpu_tests),
    ("concurrent nvJPEG decode equals serial decode", "issue 16", "concurrent-decode", concurrent_decode),
    (f"32-image requests >= {E2E.images_per_s_32:,.0f} images/s", "issue 7", "e2e", best_32),
    (
        "32-image requests >= 70% of the decode + encode ceiling at batch 32",
        "issue 7",
        "e2e",
        share_of_ceiling,
    ),
    (
        f"1 image, {LABELS} labels, 256 clients: >= {E2E.single_requests_per_s_256:,.0f} req/s with p99 <= "
        f"{E2E.single_p99_ms_256:.0f} ms",
        "issue 7",
        "e2e",
        many_clients,
    ),
    (
        f"1 image, {LABELS} labels, 1 client: server-side p50 <= {E2E.single_server_p50_ms_1:.0f} ms",
        "issue 7",
        "e2e",
        one_client,
    ),
    (
        f"1 image, {LABELS} labels, 64 clients: >= {E2E.over_baseline_at_64:.0f}x the hand-written baseline",
        "issue 7",
        "e2e",
        over_baseline,
    ),
    (
        f"first request with 1,000 new labels adds <= {1000 * GOAL_S:.0f} ms",
        "issue 7",
        "text-first",
        first_request,
    ),
    (
        "GPU memory flat under sustained load (reserved growth <= 5% after warm-up)",
        "issue 7",
        "reliability",
        memory_flat,
    ),
    ("hot swap of CUDA lanes under traffic: 0 failed requests", "issue 16", "reliability", hot_swap),
    (
        "one training step per method, 1,000 classes, ViT-B-16: no out of memory",
        "issue 16",
        "train-step",
        train_steps,
    ),
]


def judge(stages: dict[str, dict[str, Any]], smoke: bool) -> list[Goal]:
    """Every goal, judged from the stages' records (name -> record with status and figures)."""
    goals = []
    for goal, source, stage, check in GOALS:
        record = stages.get(stage, {})
        figures = record.get("figures")
        if figures is None:
            why = f"stage {stage} {record.get('status', 'not run')}"
            goals.append(Goal(goal, source, stage, "", "pending", why))
            continue
        result = check(figures)
        if result is None:
            goals.append(Goal(goal, source, stage, "", "pending", "not measured in this run"))
        elif smoke:
            note = "CPU smoke run: the goal is an H200 figure"
            goals.append(Goal(goal, source, stage, result[0], "pending", note))
        else:
            goals.append(Goal(goal, source, stage, result[0], "pass" if result[1] else "fail"))
    return goals
