"""The `clipserve` console command. Each sub-command lives in its own package module exposing
`add_arguments(parser)` and `run(args) -> int`; modules are imported only when their command
runs, so `clipserve train` never imports the web stack and `clipserve serve` never the trainer."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# name -> (module, one-line help). Add a line here to add a command.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("service.cli", "serve /classify over HTTP: cross-request batching, hot-swappable checkpoints"),
    "train": ("training.train_cmd", "learn a prompt from a folder of images; writes a servable checkpoint"),
    "eval": ("training.eval_cmd", "score checkpoints with a paper protocol; JSON/Markdown report with plots"),
    "export": ("training.export_cmd", "servable checkpoint with eval results, and the image encoder as ONNX"),
    "world": (
        "training.world_cmd",
        "write the procedural demo world out as an image folder (one folder per class)",
    ),
    "pretrain": (
        "training.pretrain_cmd",
        "pretrain a small backbone on the procedural world (InfoNCE, ProtoCLIP)",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipserve", description="Serve and train adapted CLIP classifiers."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, summary) in COMMANDS.items():
        sub = commands.add_parser(name, help=summary, description=summary)
        sub.set_defaults(_module=module)
        if name in _requested_commands():
            importlib.import_module(module).add_arguments(sub)
    return parser


def _requested_commands() -> set[str]:
    # Only the command being run (or asked for --help) imports its module to declare options.
    return {arg for arg in sys.argv[1:] if arg in COMMANDS}


def main(argv: list[str] | None = None) -> int:
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:])
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(importlib.import_module(args._module).run(args))
    except (ValueError, OSError, RuntimeError) as error:
        # Bad input (a missing folder, an unknown option value, unusable weights) is the user's to
        # fix: say what is wrong in one line. CLIPSERVE_DEBUG=1 shows the traceback.
        if os.environ.get("CLIPSERVE_DEBUG"):
            raise
        print(f"clipserve {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
