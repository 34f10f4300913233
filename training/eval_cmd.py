"""`clipserve eval`: score trained checkpoints with one of the papers' protocols and write a
report (JSON, Markdown, PNG plots). The work is training/eval_run.py's; the options are declared
in training/requests.py (EvalRequest)."""

from __future__ import annotations

import argparse
import json
import logging

from training.options import add_options, values_from_args
from training.requests import EvalRequest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    add_options(parser, EvalRequest)


def run(args: argparse.Namespace) -> int:
    from training.eval_run import run_evaluation

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    request = EvalRequest(**values_from_args(EvalRequest, args))
    evaluation, report = run_evaluation(request)
    print(json.dumps({"report": str(report), "summary": evaluation.summary}, indent=1))
    return 0
