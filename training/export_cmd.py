"""`clipserve export`: turn a trained checkpoint into the servable one (class embeddings
precomputed, evaluation results in the header), and optionally the image encoder as ONNX. The
backbone is the one the checkpoint names: rebuilt from its open_clip tag, or loaded from the
weights file it was trained from (or --pretrained, when that file has moved)."""

from __future__ import annotations

import argparse
import json
import logging

from training.options import add_options, values_from_args
from training.requests import ExportRequest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    add_options(parser, ExportRequest)


def run(args: argparse.Namespace) -> int:
    from training.checkpoints import find_checkpoints
    from training.export import export_checkpoint

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    request = ExportRequest(**values_from_args(ExportRequest, args))
    checkpoints = find_checkpoints([request.checkpoint])
    if len(checkpoints) != 1:
        raise ValueError(f"{request.checkpoint} holds {len(checkpoints)} checkpoints; export one of them")
    result = export_checkpoint(
        checkpoints[0],
        request.out,
        report=request.report,
        onnx=request.onnx,
        pretrained=request.pretrained,
        check_onnx=request.check_onnx,
    )
    print(json.dumps({k: str(v) if v is not None else None for k, v in vars(result).items()}, indent=1))
    return 0
