"""bench/gpu_check.py: a stage that fails, crashes or overruns is recorded and the rest still run;
the JSON and the docs section keep their shape; every stage's command line is one its bench accepts,
started by this interpreter (no console script). The full CPU smoke run is CI's `make gpu-check
DEVICE=cpu`, not a test: it takes a minute and more."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench import gpu_check
from bench.gpu_check_goals import GOALS
from bench.gpu_check_stages import STAGES, Plan, Stage, read_json


def python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def writes(name: str, value: Any) -> list[str]:
    return python(f"import sys; open(sys.argv[1], 'w').write({json.dumps(value)!r})", name)


def fake_stages(work: Path) -> list[Stage]:
    def file_stage(name: str, argv: list[str] | None, **kw: Any) -> Stage:
        return Stage(
            name,
            name,
            20,
            20,
            (lambda plan: argv) if argv else None,
            lambda plan: read_json(work / f"{name}.json"),
            **kw,
        )

    return [
        file_stage("crashes", python("raise SystemExit('boom')")),
        Stage("hangs", "hangs", 20, 1.5, lambda plan: python("import time; time.sleep(60)"), lambda plan: {}),
        file_stage("good", writes(str(work / "good.json"), {"figure": 1.5, "not_measured": float("nan")})),
        file_stage(
            "checks-fail",
            writes(str(work / "checks-fail.json"), {"ok": False}),
            failed=lambda figures: not figures["ok"],
        ),
        file_stage("gpu-only", writes(str(work / "gpu-only.json"), {}), gpu_only=True),
    ]


def test_failing_stages_are_recorded_and_the_rest_still_run(tmp_path: Path) -> None:
    stages = fake_stages(tmp_path)
    plan = Plan("cpu", tmp_path, tmp_path / "PERFORMANCE.md")
    started = time.monotonic()
    records = gpu_check.run_stages(stages, plan, budget_s=100)
    by_name = {r["name"]: r for r in records}
    assert [r["name"] for r in records] == [s.name for s in stages]  # in order, none dropped
    assert by_name["crashes"]["status"] == "error" and by_name["crashes"]["returncode"] == 1
    assert "boom" in by_name["crashes"]["log_tail"]
    assert by_name["hangs"]["status"] == "timeout" and by_name["hangs"]["returncode"] is None
    assert by_name["good"]["status"] == "passed" and by_name["good"]["figures"]["figure"] == 1.5
    assert by_name["checks-fail"]["status"] == "failed"
    assert by_name["gpu-only"]["status"] == "skipped"  # the CPU smoke run
    assert time.monotonic() - started < 20  # the hang cost its 1.5 s budget (+ grace), not 60 s


def test_a_timed_out_stage_leaves_no_process_behind(tmp_path: Path) -> None:
    marker = tmp_path / "pids"
    code = (
        "import os, subprocess, sys, time; "
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "open(sys.argv[1], 'w').write(str(child.pid)); time.sleep(60)"
    )
    stage = Stage("hangs", "hangs", 4, 4, lambda plan: python(code, str(marker)), lambda plan: {})
    gpu_check.run_stages([stage], Plan("cpu", tmp_path, tmp_path / "P.md"), budget_s=100)
    grandchild = int(marker.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(grandchild, 0)


def test_the_overall_budget_skips_what_no_longer_fits(tmp_path: Path) -> None:
    stage = Stage("late", "late", 20, 20, lambda plan: python("pass"), lambda plan: {})
    plan = Plan("cpu", tmp_path, tmp_path / "P.md")
    records = gpu_check.run_stages([stage], plan, budget_s=gpu_check.RESERVE_S + 1)
    assert records[0]["status"] == "skipped" and "budget" in records[0]["reason"]


def test_main_writes_the_json_and_the_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu_check, "STAGES", fake_stages(tmp_path / "work")[2:])  # good, fails, gpu-only
    out, docs = tmp_path / "out" / "gpu-check.json", tmp_path / "docs" / "PERFORMANCE.md"
    argv = ["--device", "cpu", "--json", str(out), "--docs", str(docs), "--work", str(tmp_path / "work")]
    assert gpu_check.main(argv) == 0  # a stage whose checks fail ran: not an error of the check
    report = json.loads(out.read_text(), parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert report["stages"][0]["figures"] == {"figure": 1.5, "not_measured": None}
    expected = {
        "schema",
        "device",
        "smoke",
        "date",
        "command",
        "machine",
        "software",
        "budget_s",
        "seconds",
        "ok",
        "stages",
        "goals",
    }
    assert set(report) == expected and report["device"] == "cpu" and report["smoke"] is True
    assert [s["status"] for s in report["stages"]] == ["passed", "failed", "skipped"]
    assert len(report["goals"]) == len(GOALS)
    for goal in report["goals"]:
        assert set(goal) == {"goal", "source", "stage", "measured", "verdict", "note"}
        assert goal["verdict"] == "pending"  # the CPU smoke run passes no H200 goal
    section = docs.read_text()
    assert section.count("<!-- bench:gpu-check:cpu:start -->") == 1
    assert "| good | passed |" in section and "| checks-fail | failed |" in section


def test_main_exits_1_when_a_stage_cannot_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu_check, "STAGES", fake_stages(tmp_path / "work")[:1])
    out = tmp_path / "gpu-check.json"
    argv = ["--device", "cpu", "--json", str(out), "--docs", str(tmp_path / "P.md"), "--work", str(tmp_path)]
    assert gpu_check.main(argv) == 1
    assert json.loads(out.read_text())["ok"] is False


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_every_stage_command_is_one_its_bench_accepts(device: str, tmp_path: Path) -> None:
    from bench import ceiling, e2e, pretrain_step, reliability, text_first_request, train_step

    parsers = {
        "ceiling.py": ceiling.parse_args,
        "e2e.py": e2e.parse_args,
        "reliability.py": reliability.parse,
        "text_first_request.py": text_first_request.parse_args,
        "train_step.py": train_step.parse_args,
        "pretrain_step.py": pretrain_step.parse_args,
    }
    plan = Plan(device, tmp_path, tmp_path / "PERFORMANCE.md")
    for stage in STAGES:
        if stage.argv is None:
            continue
        argv = stage.argv(plan)
        assert argv[0] == sys.executable, stage.name  # the interpreter itself, never a console script
        if argv[1] == "-m":
            assert argv[2] == "pytest" and all(Path(f).is_file() for f in argv[3:] if f.startswith("tests/"))
            continue
        script = Path(argv[1])
        assert script.is_file(), stage.name
        args = parsers[script.name](argv[2:])  # argparse exits on an unknown or malformed flag
        arch = getattr(args, "arch", None)
        if arch is not None and device == "cuda":
            assert arch in ("ViT-B-32", "ViT-B-16"), stage.name  # the models, random weights
        if device == "cpu" and arch is not None:
            assert arch == "clipserve-tiny-vit", stage.name


def test_stage_one_collects_every_gpu_test_module() -> None:
    from bench.gpu_check_stages import gpu_test_files

    files = gpu_test_files()
    assert "tests/service/engine/test_cuda_graphs.py" in files
    assert "tests/bench/test_gpu_check.py" not in files  # no gpu mark here


def test_benches_start_the_server_without_a_console_script() -> None:
    from bench.server_process import clipserve_command

    command = clipserve_command(8123, "--device", "cuda")
    assert command[:2] == [sys.executable, str(Path(gpu_check.ROOT / "clipserve_cli.py"))]
    assert command[2:] == ["serve", "--host", "127.0.0.1", "--port", "8123", "--device", "cuda"]


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="tests.service.engine.test_decode_streams"
          name="test_concurrent_decodes_next_to_a_running_lane_equal_a_serial_decode" time="3.1">
  {outcome}</testcase>
<testcase classname="tests.service.engine.test_cuda_graphs" name="test_graph_replay_matches_eager" time="1"/>
<testcase classname="tests.models.test_no_host_sync" name="test_concurrent_elsewhere" time="1">
  <skipped message="x"/></testcase>
</testsuite></testsuites>"""


@pytest.mark.parametrize(("outcome", "failed"), [("", False), ('<failure message="pixels differ"/>', True)])
def test_the_concurrent_decode_check_is_read_from_the_gpu_tests(
    tmp_path: Path, outcome: str, failed: bool
) -> None:
    from bench.gpu_check_stages import concurrent_failed, read_concurrent_decode, read_junit, tests_failed

    (tmp_path / "gpu-tests.xml").write_text(JUNIT.format(outcome=outcome))
    plan = Plan("cuda", tmp_path, tmp_path / "P.md")
    counts = read_junit(plan)
    assert (counts["tests"], counts["passed"], counts["failed"], counts["skipped"]) == (
        3,
        2 - failed,
        failed,
        1,
    )
    assert tests_failed(counts) is failed
    figures = read_concurrent_decode(plan)  # the engine's concurrent test only, not the models' one
    assert [case["test"].split("::")[0] for case in figures["cases"]] == [
        "tests.service.engine.test_decode_streams"
    ]
    assert concurrent_failed(figures) is failed


def test_a_missing_concurrent_decode_test_is_an_error_not_a_pass(tmp_path: Path) -> None:
    from bench.gpu_check_stages import STAGES

    (tmp_path / "gpu-tests.xml").write_text(JUNIT.replace("test_concurrent_decodes", "test_decodes"))
    stage = next(stage for stage in STAGES if stage.name == "concurrent-decode")
    (record,) = gpu_check.run_stages([stage], Plan("cuda", tmp_path, tmp_path / "P.md"), budget_s=100)
    assert record["status"] == "error" and "concurrent" in record["reason"]


def test_a_crashed_stage_is_not_credited_with_an_earlier_runs_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench.gpu_check_stages import read_file

    (tmp_path / "stale.json").write_text("{}")  # what an earlier run in the same --work left
    stage = Stage(
        "stale", "stale", 20, 20, lambda plan: python("raise SystemExit(1)"), read_file("stale.json")
    )
    monkeypatch.setattr(gpu_check, "STAGES", [stage])
    out = tmp_path / "gpu-check.json"
    argv = ["--device", "cpu", "--json", str(out), "--docs", str(tmp_path / "P.md"), "--work", str(tmp_path)]
    assert gpu_check.main(argv) == 1
    assert json.loads(out.read_text())["stages"][0]["status"] == "error"


def test_a_timed_out_stage_keeps_the_figures_it_wrote_before_its_limit(tmp_path: Path) -> None:
    code = "import json, sys, time; json.dump({'cells': 2}, open(sys.argv[1], 'w')); time.sleep(60)"
    rows = tmp_path / "rows.json"
    stage = Stage(
        "partial", "partial", 4, 4, lambda plan: python(code, str(rows)), lambda plan: read_json(rows)
    )
    (record,) = gpu_check.run_stages([stage], Plan("cpu", tmp_path, tmp_path / "P.md"), budget_s=100)
    assert record["status"] == "timeout" and record["figures"] == {"cells": 2}
    assert record["reason"].endswith("figures partial")
