"""`make bench-methods`: what each adaptation method does on the procedural world, with the
papers' protocols (methods.md §9 scaled to the world) on the ViT world backbone, on the CPU.

    python bench/methods.py                      # the full run: writes docs/METHODS.md + plots
    python bench/methods.py --quick --out DIR/M.md   # a smoke run of a minute or two

Every setting is in bench/methods_settings.py, written down before any method ran; the report
(docs/METHODS.md, generated, never hand-edited) prints them with the command, the machine, the
date, the load average and the wall time of the run. Raw figures go to METHODS.json beside it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, like the Makefile

from bench.methods_data import SetSpec, materialise
from bench.methods_protocols import (
    Sets,
    base_to_new,
    conditions,
    few_shot,
    pretraining,
    ship_setting,
    sixteen,
)
from bench.methods_report import write_report
from bench.methods_runs import Runner
from bench.methods_settings import CONDITION_GRID, FULL, QUICK, Scale, condition
from bench.report import command_line, cpu_model, today_utc
from models.backbone import build_backbone
from models.checkpoint import read_header
from training.distributed import init_from_env
from training.world import World, WorldConfig
from training.world.conditions import CONDITIONS, combined

log = logging.getLogger("bench.methods")

ARCH = "clipserve-demo-vit"
BACKBONE = "models/demo/backbone.safetensors"
INFONCE = "models/demo/backbone-infonce.safetensors"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render_only:  # the report from a results file: nothing is trained or scored
        write_report(json.loads(Path(args.render_only).read_text()), Path(args.out))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    scale = QUICK if args.quick else FULL
    work = Path(args.work)
    if not args.reuse:
        shutil.rmtree(work / "runs", ignore_errors=True)  # every method is trained afresh
    started, load_before = time.perf_counter(), os.getloadavg()
    runner = make_runner(args.backbone, work, scale, args.reuse)
    results: dict[str, Any] = {}
    stage_seconds: dict[str, float] = {}

    def timed(name: str, fn: Any) -> Any:
        begin = time.perf_counter()
        value = fn()
        stage_seconds[name] = time.perf_counter() - begin
        log.info("%s done in %.0f s", name, stage_seconds[name])
        return value

    sets = timed("image sets", lambda: build_sets(runner, scale, work))  # rendered unless kept
    results["conditions"] = timed("conditions", lambda: conditions(runner, sets))
    if args.conditions_only:  # how the condition was chosen: zero-shot only, nothing trained
        print(json.dumps(results["conditions"]["zero_shot"], indent=1))
        return 0
    curve, kept = timed("few-shot", lambda: few_shot(runner, sets))
    results["few_shot"] = curve
    results["sixteen"] = timed("16-shot, domain shift, cross-dataset", lambda: sixteen(runner, sets, kept))
    b2n, b2n_models = timed("base-to-new", lambda: base_to_new(runner, sets))
    results["base_to_new"] = b2n
    results["ship_setting"] = timed("SHIP setting", lambda: ship_setting(runner, sets, b2n_models))
    results["pretraining"] = timed(
        "ProtoCLIP vs InfoNCE", lambda: compare_pretraining(args, runner, scale, work)
    )
    results["run"] = run_record(args, scale, started, load_before, stage_seconds, runner)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    write_report(results, out)
    print(json.dumps({"report": str(out), "seconds": round(time.perf_counter() - started)}))
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 seed, K = 1, 1 epoch, tiny sets")
    parser.add_argument("--out", default="docs/METHODS.md", help="report (plots and METHODS.json beside it)")
    parser.add_argument("--backbone", default=BACKBONE, help=f"ProtoCLIP world backbone ({ARCH})")
    parser.add_argument("--infonce-backbone", default=INFONCE, help="InfoNCE backbone, same steps")
    parser.add_argument("--work", default="runs/bench-methods", help="image sets and training runs")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    parser.add_argument("--reuse", action="store_true", help="keep earlier training runs (default: retrain)")
    parser.add_argument("--render-only", metavar="JSON", help="only write the report from a METHODS.json")
    parser.add_argument(
        "--conditions-only", action="store_true", help="only the zero-shot table of the conditions; no report"
    )
    return parser.parse_args(argv)


def make_runner(path: str, work: Path, scale: Scale, reuse: bool = False) -> Runner:
    backbone = build_backbone(ARCH, path, "fp32", "cpu")
    return Runner(backbone, path, work, scale, init_from_env("cpu"), resume=reuse)


def build_sets(runner: Runner, scale: Scale, work: Path) -> Sets:
    world = World(WorldConfig(seed=0))
    cond, n = condition(), scale.test_per_class
    root = work / "sets"

    def held(name: str, **kw: Any) -> Any:
        return materialise(world, SetSpec(name=name, split="heldout", per_class=n, **kw), root)

    grid = {
        f"combined {level}": held(f"combined-{level}", condition=combined(level)) for level in CONDITION_GRID
    }
    grid.update(
        {name: held(name, condition=c) for name, c in CONDITIONS.items() if name not in ("clean", "hard")}
    )
    grid.update(
        {
            f"clean {style}": held(f"clean-{style}", style=style)
            for style in ("sketch", *scale.shift_styles[1:])
        }
    )
    return Sets(
        train=materialise(world, SetSpec("train", "train", scale.train_per_class, condition=cond), root),
        test=held("test", condition=cond),
        easy=grid["combined 0.0"],
        shift={style: held(f"shift-{style}", style=style, condition=cond) for style in scale.shift_styles},
        cross={
            f"{labels} world": held(f"cross-{labels}", labels=labels, condition=cond)
            for labels in ("shape", "colour")
        },
        grid=grid,
    )


def compare_pretraining(args: argparse.Namespace, runner: Runner, scale: Scale, work: Path) -> dict[str, Any]:
    runners = {"ProtoCLIP": runner}
    if Path(args.infonce_backbone).is_file():
        runners["InfoNCE"] = make_runner(args.infonce_backbone, work / "infonce", scale, args.reuse)
    headers = {name: _header_summary(r.pretrained) for name, r in runners.items()}
    return pretraining(runners, lambda r: build_sets(r, scale, work), headers)


def _header_summary(path: str) -> dict[str, Any]:
    header = read_header(path)
    return {
        "metrics": header.metrics,
        "steps": header.provenance.get("steps"),
        "command": header.provenance.get("command"),
    }


def run_record(
    args: argparse.Namespace,
    scale: Scale,
    started: float,
    load: tuple[float, ...],
    stages: dict[str, float],
    runner: Runner,
) -> dict[str, Any]:
    return {
        "command": command_line(),
        "date": today_utc(),
        "machine": f"{cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads",
        "torch": torch.__version__,
        "quick": args.quick,
        "scale": {k: v for k, v in vars(replace(scale)).items()},
        "load_before": list(load),
        "load_after": list(os.getloadavg()),
        "seconds": time.perf_counter() - started,
        "stage_seconds": stages,
        "training_seconds": runner.seconds,
        "backbone": args.backbone,
        "infonce_backbone": args.infonce_backbone if Path(args.infonce_backbone).is_file() else None,
    }


if __name__ == "__main__":
    raise SystemExit(main())
