"""Every option is declared once (training/requests.py, training/hparams.py,
training/pretrain/config.py) and the command line, the loop's options and the fingerprint of a
run follow from it; the declarations import neither torch nor open_clip."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from models.defaults import DEFAULT_ARCH
from models.prompts import METHODS
from training.hparams import Hyperparameters
from training.loop import LoopOptions
from training.options import add_options, fingerprinted, parse_assignments, values_from_args
from training.pretrain.config import PretrainConfig, RunOptions
from training.pretrain_cmd import add_arguments as add_pretrain_arguments
from training.pretrain_cmd import config_from_args
from training.requests import PROMPT_METHODS, TRAIN_GROUPS, EvalRequest, ExportRequest, TrainRequest
from training.train_cmd import add_arguments, requests_from_args

ROOT = Path(__file__).resolve().parents[2]


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser


def test_the_command_line_defaults_are_the_declared_defaults() -> None:
    args = train_parser().parse_args(["--data", "d", "--out", "o"])
    (request,) = requests_from_args(args)
    assert request == TrainRequest(data="d", out=str(Path("o") / "seed_1"))
    assert request.arch == DEFAULT_ARCH and request.hparams == {} and request.learner == {}


def test_every_field_is_an_option_and_reaches_the_request() -> None:
    parser = train_parser()
    dests = {action.dest for action in parser._actions}
    assert {f.name for f in fields(TrainRequest) if f.name != "hparams"} <= dests
    assert {f.name for f in fields(Hyperparameters)} <= dests
    args = parser.parse_args(
        [
            "--data",
            "d",
            "--out",
            "runs",
            "--seeds",
            "3",
            "4",
            "--shots",
            "0",
            "--lr",
            "0.1",
            "--rrc-scale",
            "0.5",
            "1",
            "--set",
            "class_specific=true",
            "--set",
            "position=middle",
            "--n-ctx",
            "4",
            "--no-progress",
            "--val-fraction",
            "0.2",
            "--keep",
            "best",
            "--tensorboard",
            "tb",
            "--method",
            "maple",
        ]
    )
    first, second = requests_from_args(args)
    assert (first.seed, second.seed) == (3, 4)
    assert second.out == str(Path("runs") / "seed_4") and second.tensorboard == str(Path("tb") / "seed_4")
    assert first.shots is None and first.n_ctx == 4 and first.progress is False and first.method == "maple"
    assert first.hparams == {"lr": 0.1, "rrc_scale": (0.5, 1.0)}  # only what was given
    assert first.learner == {"class_specific": True, "position": "middle"}
    assert (first.val_fraction, first.keep) == (0.2, "best")


def test_the_method_choices_are_the_registered_methods() -> None:
    assert sorted(PROMPT_METHODS) == sorted(METHODS)


def test_the_loop_takes_the_requests_defaults_and_values() -> None:
    shared = {f.name for f in fields(LoopOptions)} & {f.name for f in fields(TrainRequest)}
    assert shared >= {
        "seed",
        "num_workers",
        "progress",
        "log_every",
        "resume",
        "cache_features",
        "tensorboard",
    }
    defaults = LoopOptions(Path("x"))
    request = TrainRequest(data="d", out="o")
    assert all(getattr(defaults, name) == getattr(request, name) for name in shared)


def test_the_fingerprint_holds_the_options_that_decide_the_result() -> None:
    request = TrainRequest(data="d", out="o")
    assert set(fingerprinted(request)) == {
        "label_only_classes",
        "shots",
        "subset",
        "seed",
        "val_every",
        "method",
        "cache_features",
    }
    # Not in it: where things are and how the run is shown (data, val and backbone enter as what they
    # resolve to: the images, the weights' identity; hparams and learner as their resolved values).


def test_eval_and_export_options_are_declared_once_too() -> None:
    evaluation = EvalRequest(
        **values_from_args(
            EvalRequest,
            _parse(EvalRequest, ["a", "b", "--out", "x", "--target", "t1", "--target", "t2", "--no-plots"]),
        )
    )
    assert evaluation == EvalRequest(checkpoints=["a", "b"], out="x", targets=["t1", "t2"], plots=False)
    export = ExportRequest(**values_from_args(ExportRequest, _parse(ExportRequest, ["c", "--out", "y"])))
    assert export == ExportRequest(checkpoint="c", out="y") and export.check_onnx is True
    assert _parse(ExportRequest, ["c", "--out", "y", "--no-onnx-check"]).check_onnx is False


def _parse(request_class: type, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_options(parser, request_class)
    return parser.parse_args(argv)


def test_pretraining_options_come_from_its_config_and_run_options() -> None:
    parser = argparse.ArgumentParser()
    add_pretrain_arguments(parser)
    args = parser.parse_args(["--out", "x", "--episodes", "3", "--no-resume", "--tensorboard", "tb"])
    assert config_from_args(args) == PretrainConfig(episodes=3)
    assert RunOptions(**values_from_args(RunOptions, args)) == RunOptions(
        Path("x"), resume=False, tensorboard="tb"
    )
    helps = [action.help for action in parser._actions]
    assert all(helps), [a.dest for a in parser._actions if not a.help]


def test_assignments_parse_json_values() -> None:
    assert parse_assignments(["n=4", "s=a photo of a", "b=false", "x=null"]) == {
        "n": 4,
        "s": "a photo of a",
        "b": False,
        "x": None,
    }
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_assignments(["novalue"])


def test_declaring_the_options_imports_neither_torch_nor_open_clip() -> None:
    code = (
        "import sys, argparse\n"
        "import training.requests, training.hparams, training.options, training.pretrain.config\n"
        "import training.train_cmd, training.pretrain_cmd, training.export_cmd, training.eval_cmd\n"
        "for name in ('train', 'pretrain', 'export', 'eval'):\n"
        "    getattr(training, name + '_cmd').add_arguments(argparse.ArgumentParser())\n"
        "heavy = sorted(m for m in ('torch', 'open_clip', 'torchvision') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run(
        [sys.executable, "-c", code], check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )


def test_train_groups_name_every_group() -> None:
    groups = {f.metadata["group"] for f in fields(TrainRequest)}
    assert groups == set(TRAIN_GROUPS)
