"""End to end through HTTP: clipserve against the hand-written baseline (bench/baseline_server.py),
both real servers on loopback, driven by bench/loadgen.py (several processes, closed loop).

For single-image and 32-image requests of 640x480 JPEGs, with 10 and 1,000 labels, at 1, 16, 64
and 256 concurrent clients: images/s, requests/s, client-side p50/p99 and the server-side p50 (from
the Server-Timing header). The baseline runs the same cells up to 64 clients (at 256 it would
spend minutes draining its backlog). Rewrites the `e2e:<device>` section of docs/PERFORMANCE.md
and a plot beside it.

    python bench/e2e.py                                            # CPU, tiny model (a smoke run)
    python bench/e2e.py --device cuda --arch ViT-B-32 --seconds 8  # the H200 run (issue 7 goals)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, like the Makefile

from bench.images import photo_jpeg
from bench.loadgen import closed_loop, multipart_classify, summarise
from bench.report import command_line, cpu_model, replace_section, today_utc
from bench.server_process import ServerProcess, clipserve_command, free_port

ROOT = Path(__file__).resolve().parents[1]
# labels like "striped cat": two words, as class names usually are (their token count sets the text cost)
ADJECTIVES = (
    "red green blue small large old new striped spotted wooden metal glass plastic furry shiny dull "
    "bright dark wild tame round square tall short heavy light soft hard wet dry hot cold young "
    "ancient tiny giant fast slow loud quiet clean dirty"
)
NOUNS = (
    "cat dog bird car truck boat plane chair table lamp house tree flower apple bottle shoe clock "
    "phone guitar horse fish bicycle bridge mountain river"
)


@dataclass(frozen=True)
class Cell:
    images: int  # per request
    labels: int  # per request
    clients: int


@dataclass(frozen=True)
class Goals:
    """Issue 7, on the H200 with ViT-B/32 (reported for CUDA runs only)."""

    images_per_s_32: float = 8000.0
    single_requests_per_s_256: float = 3000.0
    single_p99_ms_256: float = 100.0
    single_server_p50_ms_1: float = 5.0
    over_baseline_at_64: float = 100.0


def photo_like_jpegs(count: int) -> list[bytes]:
    """640x480 JPEGs at quality 90 (bench/images.py: the same images as the ceiling bench)."""
    return [photo_jpeg(640, 480, seed=seed) for seed in range(count)]


def label_set(count: int) -> list[str]:
    labels = [f"{a} {n}" for n in NOUNS.split() for a in ADJECTIVES.split()]
    if count > len(labels):
        raise ValueError(f"at most {len(labels)} labels")
    return labels[:count]


def requests_for(cell: Cell, jpegs: Sequence[bytes], variants: int = 8) -> list[bytes]:
    """A few different requests of this shape (images rotate through the pool), sent in turn."""
    labels = label_set(cell.labels)
    return [
        multipart_classify([jpegs[(v * cell.images + i) % len(jpegs)] for i in range(cell.images)], labels)
        for v in range(variants)
    ]


def measure(port: int, cell: Cell, jpegs: Sequence[bytes], args: argparse.Namespace) -> dict[str, Any]:
    requests = requests_for(cell, jpegs)
    processes = min(args.processes, cell.clients)
    # warm-up at the same concurrency: connections, the label cache, the batcher's batch sizes
    closed_loop(port, requests, cell.clients, args.warmup_seconds, processes, args.timeout_s)
    records = closed_loop(port, requests, cell.clients, args.seconds, processes, args.timeout_s)
    figures = summarise(records, args.seconds).as_dict()
    return {**vars(cell), **figures, "images_per_s": round(figures["ok_per_s"] * cell.images, 1)}


def cells(concurrency: Sequence[int], images: Sequence[int], labels: Sequence[int]) -> list[Cell]:
    return [Cell(i, n, c) for i in images for n in labels for c in concurrency]


def clipserve_server(args: argparse.Namespace) -> ServerProcess:
    port = free_port()
    flags = [
        "--arch", args.arch, "--pretrained", args.pretrained, "--device", args.device,
        # refusals are not what this measures: room for every client's request
        "--max-inflight-requests", "4096", "--max-queue-images", "65536",
        "--request-timeout-s", str(args.timeout_s),
        "--log-level", "warning", *args.serve_args.split(),
    ]  # fmt: skip
    return ServerProcess(clipserve_command(port, *flags), port)


def baseline_server(args: argparse.Namespace) -> ServerProcess:
    port = free_port()
    script = str(ROOT / "bench" / "baseline_server.py")
    command = [
        sys.executable,
        script,
        "--port",
        str(port),
        "--arch",
        args.arch,
        "--pretrained",
        args.pretrained,
    ]
    return ServerProcess([*command, "--device", args.device], port)


def run(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    jpegs = photo_like_jpegs(64)
    results: dict[str, list[dict[str, Any]]] = {"clipserve": [], "baseline": []}
    plans = [
        ("clipserve", clipserve_server, args.concurrency),
        ("baseline", baseline_server, [c for c in args.concurrency if c <= args.baseline_max_clients]),
    ]
    for name, start, concurrency in plans:
        if name == "baseline" and args.no_baseline:
            continue
        images = (args.baseline_images or args.images) if name == "baseline" else args.images
        with start(args) as server:
            for cell in cells(concurrency, images, args.labels):
                row = measure(server.port, cell, jpegs, args)
                results[name].append(row)
                print(name, row, flush=True)
                if args.json is not None:  # after every cell: a run stopped at its time limit keeps them
                    partial = args.json.with_suffix(".partial")
                    partial.write_text(json.dumps(results, indent=1))
                    partial.replace(args.json)  # atomic: a kill mid-write leaves the previous cells
    return results


def goal_checks(results: dict[str, list[dict[str, Any]]], goals: Goals) -> list[tuple[str, str, bool]]:
    """(goal, measured, held) for the issue 7 goals that this run's cells cover."""
    ours = {(r["images"], r["labels"], r["clients"]): r for r in results["clipserve"]}
    base = {(r["images"], r["labels"], r["clients"]): r for r in results["baseline"]}
    checks = []
    best32 = max((r["images_per_s"] for r in results["clipserve"] if r["images"] == 32), default=None)
    if best32 is not None:
        goal = f"32-image requests >= {goals.images_per_s_32:.0f} images/s"
        checks.append((goal, f"{best32:.0f} images/s (best cell)", best32 >= goals.images_per_s_32))
    for labels in sorted({r["labels"] for r in results["clipserve"]}):
        if (many := ours.get((1, labels, 256))) is not None:
            goal = (
                f"1 image, {labels} labels, 256 clients: >= {goals.single_requests_per_s_256:.0f} req/s "
                f"with p99 <= {goals.single_p99_ms_256:.0f} ms"
            )
            measured = f"{many['ok_per_s']:.0f} req/s, p99 {many['p99_ms']:.1f} ms"
            held = many["ok_per_s"] >= goals.single_requests_per_s_256
            checks.append((goal, measured, held and many["p99_ms"] <= goals.single_p99_ms_256))
        if (one := ours.get((1, labels, 1))) is not None:
            goal = f"1 image, {labels} labels, 1 client: server-side p50 <= {goals.single_server_p50_ms_1} ms"
            server_p50 = one["server_p50_ms"]
            checks.append((goal, f"{server_p50:.2f} ms", server_p50 <= goals.single_server_p50_ms_1))
    for key, theirs in sorted(base.items()):
        if key[2] != 64 or key not in ours or theirs["images_per_s"] <= 0:
            continue
        ratio = ours[key]["images_per_s"] / theirs["images_per_s"]
        goal = f"{key[0]} image(s), {key[1]} labels, 64 clients: >= {goals.over_baseline_at_64:.0f}x baseline"
        measured = f"{ratio:.1f}x ({ours[key]['images_per_s']:.0f} vs {theirs['images_per_s']:.1f} images/s)"
        checks.append((goal, measured, ratio >= goals.over_baseline_at_64))
    return checks


def against_ceiling(
    results: dict[str, list[dict[str, Any]]], ceiling: dict[str, dict[str, float]]
) -> tuple[str, str, bool]:
    """32-image requests end to end against the decode + encode ceiling at batch 32 (bench/ceiling.py)."""
    series = next(v for label, v in ceiling.items() if label.startswith("decode + encode ceiling"))
    at_32 = series["32"]  # JSON keys are strings
    best = max(r["images_per_s"] for r in results["clipserve"] if r["images"] == 32)
    share = best / at_32
    return ("32-image requests >= 70% of the decode + encode ceiling at batch 32",
            f"{100 * share:.0f}% ({best:.0f} of {at_32:.0f} images/s)", share >= 0.7)  # fmt: skip


def plot(results: dict[str, list[dict[str, Any]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, style in (("clipserve", "-"), ("baseline", "--")):
        shapes = sorted({(r["images"], r["labels"]) for r in results[name]})
        for images, labels in shapes:
            rows = sorted((r for r in results[name] if (r["images"], r["labels"]) == (images, labels)),
                          key=lambda r: r["clients"])  # fmt: skip
            clients = [r["clients"] for r in rows]
            label = f"{name}: {images} img/request, {labels} labels"
            throughput.plot(clients, [r["images_per_s"] for r in rows], style, marker="o", label=label)
            latency.plot(clients, [r["p99_ms"] for r in rows], style, marker="o", label=label)
    for axis, ylabel in ((throughput, "images/s"), (latency, "p99 latency (ms, client side)")):
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("concurrent clients")
        axis.set_ylabel(ylabel)
        axis.grid(True, which="both", alpha=0.3)
    throughput.legend(fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


COLUMNS = (  # header, row key, format
    ("images/request", "images", "{}"),
    ("labels", "labels", "{}"),
    ("clients", "clients", "{}"),
    ("images/s", "images_per_s", "{:.1f}"),
    ("requests/s", "ok_per_s", "{:.1f}"),
    ("p50 ms", "p50_ms", "{:.1f}"),
    ("p99 ms", "p99_ms", "{:.1f}"),
    ("server p50 ms", "server_p50_ms", "{:.2f}"),
    ("answers", "codes", "{}"),
)


def cell_text(value: Any, form: str) -> str:
    return "–" if isinstance(value, float) and value != value else form.format(value)  # NaN: not measured


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| " + " | ".join(header for header, _, _ in COLUMNS) + " |", "|---" * len(COLUMNS) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(cell_text(row[key], form) for _, key, form in COLUMNS) + " |")
    return lines


def ratios(results: dict[str, list[dict[str, Any]]]) -> list[str]:
    """clipserve's images/s over the baseline's, for every cell both ran."""
    base = {(r["images"], r["labels"], r["clients"]): r["images_per_s"] for r in results["baseline"]}
    header = "| images/request | labels | clients | clipserve images/s | baseline images/s | ratio |"
    lines = [header, "|---|---|---|---|---|---|"]
    for r in results["clipserve"]:
        theirs = base.get((r["images"], r["labels"], r["clients"]))
        if theirs:
            lines.append(f"| {r['images']} | {r['labels']} | {r['clients']} | {r['images_per_s']:.1f} | "
                         f"{theirs:.1f} | {r['images_per_s'] / theirs:.1f}x |")  # fmt: skip
    return lines


def report(args: argparse.Namespace, results: dict[str, list[dict[str, Any]]], load_average: float) -> str:
    device = args.device
    picture = args.out.parent / f"e2e-{device.split(':')[0]}.png"  # beside the page that shows it
    title = f"clipserve vs hand-written baseline, {args.arch} ({args.pretrained}), {device}"
    plot(results, picture, title)
    machine = f"{cpu_model()}, {os.cpu_count()} cores, load average at start {load_average:.1f}"
    if device.startswith("cuda"):
        import torch

        machine = f"{torch.cuda.get_device_name(0)}; {machine}"
    lines = [
        f"## End to end through HTTP: clipserve vs a hand-written server ({device})",
        "",
        f"Command: `{command_line()}`  ",
        f"Date: {today_utc()}; machine: {machine}.  ",
        f"{args.arch} with {args.pretrained} weights; 640x480 JPEGs (bench/images.py, quality 90, "
        f"mean {np.mean([len(j) for j in photo_like_jpegs(8)]) / 1024:.0f} KiB) sent as multipart "
        f"(`curl -F` style); closed loop, {args.warmup_seconds:.0f} s warm-up then {args.seconds:.0f} s "
        "per cell; "
        f"load generator: bench/loadgen.py in up to {args.processes} processes on the same machine. "
        "Client-side latency includes the load generator's own queueing; the server-side p50 is the "
        "service's Server-Timing (time inside the app).",
        "",
        f"![throughput and p99 latency against concurrency]({picture.name})",
        "",
        "clipserve:",
        "",
        *table(results["clipserve"]),
    ]
    if results["baseline"]:
        lines += ["", "Baseline (bench/baseline_server.py: FastAPI + open_clip + Pillow, one forward per "
                  "request, labels re-encoded per call):", "", *table(results["baseline"]),
                  "", "Side by side:", "", *ratios(results)]  # fmt: skip
    checks = goal_checks(results, Goals())
    if args.ceiling_json is not None:
        checks.append(against_ceiling(results, json.loads(args.ceiling_json.read_text())))
    if checks:
        scope = (
            "the issue 7 goals"
            if device.startswith("cuda")
            else "the issue 7 goals (set for the H200: on this CPU they only show the shape)"
        )
        lines += ["", f"Against {scope}:", "", "| goal | measured | held |", "|---|---|---|"]
        lines += [
            f"| {goal} | {measured} | {'yes' if held else '**no**'} |" for goal, measured, held in checks
        ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--arch", default=None, help="default: ViT-B-32 on CUDA, clipserve-tiny-vit on CPU")
    parser.add_argument("--pretrained", default="random")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--images", type=int, nargs="+", default=[1, 32], help="images per request")
    parser.add_argument("--labels", type=int, nargs="+", default=[10, 1000], help="labels per request")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per cell")
    parser.add_argument("--warmup-seconds", type=float, default=2.0)
    parser.add_argument("--timeout-s", type=float, default=120.0)
    parser.add_argument("--processes", type=int, default=max(1, min(8, (os.cpu_count() or 2) // 2)),
                        help="load-generator processes")  # fmt: skip
    parser.add_argument("--baseline-max-clients", type=int, default=64)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--baseline-images", type=int, nargs="+", default=None,
                        help="images per request for the baseline (default: --images)")  # fmt: skip
    parser.add_argument(
        "--serve-args", default="", help="extra flags for clipserve serve, e.g. '--max-batch-size 128'"
    )
    parser.add_argument("--ceiling-json", type=Path, default=None,
                        help="bench/ceiling.py --json of this session")  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "PERFORMANCE.md")
    parser.add_argument("--json", type=Path, default=None, help="also the raw rows (bench/gpu_check.py)")
    parser.add_argument("--no-write", action="store_true", help="no section, no plot (with --json)")
    args = parser.parse_args(argv)
    args.arch = args.arch or ("ViT-B-32" if args.device.startswith("cuda") else "clipserve-tiny-vit")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    load_average = os.getloadavg()[0]
    results = run(args)
    if not args.no_write:
        replace_section(args.out, f"e2e:{args.device.split(':')[0]}", report(args, results, load_average))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
