"""`clipserve export`: turn a trained checkpoint into the servable one (class embeddings
precomputed, evaluation results in the header), and optionally the image encoder as ONNX."""

from __future__ import annotations

import argparse
import json
import logging

from training.checkpoints import find_checkpoints
from training.export import export_checkpoint


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    parser.add_argument("checkpoint", help="a checkpoint written by `clipserve train`, or its run directory")
    parser.add_argument(
        "--out",
        required=True,
        help="path of the exported .safetensors checkpoint (written "
        "atomically: a directory watcher never sees half a file)",
    )
    parser.add_argument(
        "--report",
        help="report.json from `clipserve eval`; its mode, summary and per-set "
        "accuracies go into the checkpoint header",
    )
    parser.add_argument(
        "--onnx",
        help="also write the image encoder as ONNX here (fp32, dynamic batch axis; "
        "input 'pixels' [batch, 3, S, S] preprocessed, output 'embeddings' [batch, D] "
        "normalised). Methods that change the image side (MaPLe) export their prompted encoder",
    )
    parser.add_argument(
        "--no-onnx-check",
        dest="check_onnx",
        action="store_false",
        help="skip comparing ONNX Runtime (CPU) with torch; by default a difference above 1e-3 is an error",
    )
    parser.add_argument(
        "--pretrained",
        help="local backbone weights file, when the checkpoint's backbone is "
        "identified by the sha256 of a file",
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    checkpoints = find_checkpoints([args.checkpoint])
    if len(checkpoints) != 1:
        raise SystemExit(f"{args.checkpoint} holds {len(checkpoints)} checkpoints; export one of them")
    result = export_checkpoint(
        checkpoints[0],
        args.out,
        report=args.report,
        onnx=args.onnx,
        pretrained=args.pretrained,
        check_onnx=args.check_onnx,
    )
    print(json.dumps({k: str(v) if v is not None else None for k, v in vars(result).items()}, indent=1))
    return 0
