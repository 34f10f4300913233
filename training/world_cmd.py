"""`clipserve world`: write the procedural world out as an image folder (one sub-folder per
class, classnames.txt in label order, captions.tsv), for `clipserve train --data` and
`clipserve eval`, or to get example images to send to the service.

Held-out images never coincide with training-split images (training/world/world.py)."""

from __future__ import annotations

import argparse
import json

from training.world import SPLITS, STYLES, World, WorldConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    parser.add_argument(
        "--out", required=True, help="folder to write (created; existing files are overwritten)"
    )
    parser.add_argument("--split", choices=SPLITS, default="heldout", help="default: %(default)s")
    parser.add_argument("--per-class", type=int, default=10, help="images per class (default: %(default)s)")
    parser.add_argument(
        "--style",
        choices=(*STYLES, "mixed"),
        default="photo",
        help="mixed draws per image (default: %(default)s)",
    )
    parser.add_argument("--start", type=int, default=0, help="first sample, in per-class units (default: 0)")
    parser.add_argument("--seed", type=int, default=0, help="world seed; the demo backbone used 0")
    parser.add_argument("--image-size", type=int, default=64, help="pixels (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    world = World(WorldConfig(seed=args.seed, image_size=args.image_size))
    style = None if args.style == "mixed" else args.style
    root = world.write_folder(args.out, args.split, args.per_class, style, args.start)
    print(json.dumps({"folder": str(root), "classes": len(world), "images": args.per_class * len(world)}))
    return 0
