"""`make gpu-check`: validate the GPU path in one prepared command of at most 8 minutes.

    python bench/gpu_check.py --json $OUT/gpu-check.json            # the H200 (device cuda)
    python bench/gpu_check.py --device cpu --docs /tmp/x/PERFORMANCE.md   # the CPU smoke run (CI)

Runs the stages of bench/gpu_check_stages.py in order, each a bench script in its own process group
with its own time budget and a hard limit; a stage that fails or runs out of time is recorded and
the next one still runs. Writes one JSON (every stage's status, time, figures and log tail, and
the goals of bench/gpu_check_goals.py as pass/fail/pending) and the `gpu-check:<device>` section of
the docs page; the benches rewrite their own GPU sections of that page beside it. On the CPU the
docs page defaults to a temporary copy, so a smoke run never overwrites figures in docs/.

Exit status 1 when a stage could not run (an error or a timeout); goals that fail do not change it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, like the Makefile

from bench.gpu_check_goals import judge
from bench.gpu_check_run import run_limited
from bench.gpu_check_stages import ROOT, STAGES, Plan, Stage
from bench.report import command_line, replace_section, today_utc

RESERVE_S = 15.0  # kept back from the overall budget for the report
MIN_STAGE_S = 5.0  # a stage offered less than this is skipped, not started


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--device",
        default="cuda",
        choices=["cuda", "cpu"],
        help="cuda: the H200 sizes; cpu: the smoke sizes (tiny model)",
    )
    parser.add_argument("--json", type=Path, default=Path("gpu-check.json"), help="the results")
    parser.add_argument(
        "--docs",
        type=Path,
        default=None,
        help="page for the sections (default: docs/PERFORMANCE.md on cuda, a temporary copy on cpu)",
    )
    parser.add_argument("--log", type=Path, default=None, help="also every stage's log, concatenated")
    parser.add_argument(
        "--work", type=Path, default=None, help="a new folder in here gets the stage files (default: /tmp)"
    )
    parser.add_argument("--budget-s", type=float, default=None, help="overall (default: 480 cuda, 360 cpu)")
    parser.add_argument(
        "--stages", nargs="+", default=None, choices=[s.name for s in STAGES], help="run only these"
    )
    args = parser.parse_args(argv)
    args.budget_s = args.budget_s or (480.0 if args.device == "cuda" else 360.0)
    return args


def child_env() -> dict[str, str]:
    """The benches import the repository by path; unbuffered, so a stopped stage's log is whole."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def run_stage(stage: Stage, plan: Plan, seconds_left: float) -> dict[str, Any]:
    """One stage's record: status passed | failed | error | timeout | skipped, with its figures."""
    budget = stage.budget(plan)
    record: dict[str, Any] = {"name": stage.name, "title": stage.title, "budget_s": budget}
    if stage.gpu_only and plan.smoke:
        return {**record, "status": "skipped", "reason": "needs CUDA (CPU smoke run)"}
    if stage.argv is not None:
        timeout = min(budget, seconds_left)
        if seconds_left < MIN_STAGE_S:
            return {**record, "status": "skipped", "reason": "the overall budget is spent"}
        argv, log = stage.argv(plan), plan.work / f"{stage.name}.log"
        record["command"] = " ".join(argv)
        finished = run_limited(argv, log, timeout, child_env())
        record |= {
            "timeout_s": round(timeout, 1),
            "seconds": round(finished.seconds, 1),
            "returncode": finished.returncode,
            "log_tail": finished.log_tail,
        }
        if finished.returncode is None:
            return timed_out(
                stage, plan, {**record, "status": "timeout", "reason": f"stopped at {timeout:.0f} s"}
            )
    try:
        figures = stage.read(plan)
    except Exception as error:  # no usable output: the stage crashed before writing it
        return {**record, "status": "error", "reason": f"{type(error).__name__}: {error}"}
    failed = stage.failed(figures)
    return {**record, "status": "failed" if failed else "passed", "figures": figures}


def timed_out(stage: Stage, plan: Plan, record: dict[str, Any]) -> dict[str, Any]:
    """A stopped stage keeps what it wrote before its limit (bench/e2e.py writes after every cell)."""
    try:
        return {**record, "figures": stage.read(plan), "reason": record["reason"] + "; figures partial"}
    except Exception:
        return record


def run_stages(stages: list[Stage], plan: Plan, budget_s: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + budget_s - RESERVE_S
    records = []
    for stage in stages:
        record = run_stage(stage, plan, deadline - time.monotonic())
        print(
            f"gpu-check: {stage.name}: {record['status']} {record.get('reason', '')} "
            f"({record.get('seconds', 0)} s of {record['budget_s']:.0f})",
            flush=True,
        )
        records.append(record)
    return records


def environment(device: str) -> dict[str, str]:
    import open_clip
    import torch
    import torchvision

    name = torch.cuda.get_device_name(0) if device == "cuda" and torch.cuda.is_available() else ""
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores" + (f", {name}" if name else ""),
        "software": f"Python {sys.version.split()[0]}, torch {torch.__version__}, torchvision "
        f"{torchvision.__version__}, open_clip {open_clip.__version__}",
    }


def results(args: argparse.Namespace, plan: Plan, records: list[dict[str, Any]], seconds: float) -> dict:
    goals = judge({r["name"]: r for r in records}, plan.smoke)
    return {
        "schema": 1,
        "device": plan.device,
        "smoke": plan.smoke,
        "date": today_utc(),
        "command": command_line(),
        **environment(plan.device),
        "budget_s": args.budget_s,
        "seconds": round(seconds, 1),
        "ok": all(r["status"] not in ("error", "timeout") for r in records),
        "stages": records,
        "goals": [goal.as_dict() for goal in goals],
    }


def strict(value: Any) -> Any:
    """NaN (a figure not measured, e.g. the baseline's server-side p50) as null: strict JSON for jq."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {key: strict(item) for key, item in value.items()}
    if isinstance(value, list):
        return [strict(item) for item in value]
    return value


def default_docs(device: str, scratch: Path) -> Path:
    """docs/PERFORMANCE.md on the GPU; on the CPU a copy, so smoke figures never land in docs/."""
    page = ROOT / "docs" / "PERFORMANCE.md"
    if device == "cuda":
        return page
    copy = scratch / "docs" / "PERFORMANCE.md"
    copy.parent.mkdir(parents=True)
    shutil.copy(page, copy)
    return copy


def main(argv: list[str] | None = None) -> int:
    from bench.gpu_check_report import render  # after the stages: matplotlib etc. are not needed before

    args = parse_args(argv)
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    docs = args.docs or default_docs(args.device, scratch)
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
    # a fresh folder each run: a stage that crashes must not be credited with an earlier run's files
    plan = Plan(args.device, Path(tempfile.mkdtemp(prefix="stages-", dir=args.work or scratch)), docs)
    stages = [s for s in STAGES if args.stages is None or s.name in args.stages]
    records = run_stages(stages, plan, args.budget_s)
    report = results(args, plan, records, time.monotonic() - started)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(strict(report), indent=1, allow_nan=False))
    replace_section(docs, f"gpu-check:{plan.device}", render(report))
    if args.log is not None:
        logs = sorted(plan.work.glob("*.log"), key=lambda p: p.stat().st_mtime)
        args.log.write_text("".join(f"===== {p.stem}\n{p.read_text(errors='replace')}\n" for p in logs))
    print(f"gpu-check: wrote {args.json} and {docs} in {report['seconds']:.0f} s; ok: {report['ok']}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
