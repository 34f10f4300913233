"""Worker processes (`clipserve serve --workers N`): single-image requests/s with each worker count
in one run, the same load for each (bench/loadgen.py, closed loop, one 640x480 JPEG and 10 labels
per request), and how long a swap through the admin API takes to reach every worker under load.

Rewrites the `workers:<device>` section of docs/PERFORMANCE.md.

    python bench/workers.py                                        # CPU, tiny model: 1 and 2 workers
    python bench/workers.py --device cuda --arch ViT-B-32 --workers 1 2 4 8 --clients 64 256
                                                                   # the H200 run (issue 17 goal)

Swaps need checkpoints made for the served backbone, so they are measured with random weights
only (`--pretrained random`, the default); every worker count above 1 gets `--swaps` of them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, like the Makefile

from bench.e2e import Cell, photo_like_jpegs, requests_for
from bench.loadgen import closed_loop, probe_round, summarise
from bench.report import command_line, cpu_model, replace_section, today_utc
from bench.server_process import ServerProcess, clipserve_command, free_port

ROOT = Path(__file__).resolve().parents[1]
ADMIN_TOKEN = "bench-workers"
LABELS = 10
GOAL_REQUESTS_PER_S, GOAL_CLIENTS = 3000.0, 256  # issue 17, on one H200 with ViT-B/32


def write_versions(folder: Path, arch: str) -> list[str]:
    """pets.safetensors and two more CoOp versions of it for the served (random, seed 0) backbone
    (built here on the CPU: a checkpoint names the weights, not the device or precision)."""
    import torch

    from models.backbone import build_backbone
    from models.checkpoint import save_checkpoint
    from models.prompts import CoOp, CoOpConfig

    backbone = build_backbone(arch, pretrained=None, seed=0)
    files = ["pets.safetensors", "versions/pets-a.safetensors", "versions/pets-b.safetensors"]
    for seed, file in enumerate(files):
        torch.manual_seed(seed)
        learner = CoOp(backbone, ["cat", "dog", "bird"], CoOpConfig(n_ctx=4, init_std=0.5))
        (folder / file).parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(folder / file, learner.to_checkpoint(provenance={"bench": "workers"}))
    return files[1:]


def start_service(args: argparse.Namespace, workers: int, folder: Path) -> ServerProcess:
    port = free_port()
    flags = [
        "--arch", args.arch, "--pretrained", args.pretrained, "--device", args.device,
        "--workers", str(workers), "--checkpoint-dir", str(folder),
        "--max-inflight-requests", "4096", "--max-queue-images", "65536",  # refusals are not measured
        "--log-level", "warning", *args.serve_args.split(),
    ]  # fmt: skip
    server = ServerProcess(clipserve_command(port, *flags), port, env={"CLIPSERVE_ADMIN_TOKEN": ADMIN_TOKEN})
    server.start()  # one worker is ready; wait for the others (each listens once it is ready)
    deadline = time.monotonic() + server.start_timeout_s
    while len(worker_pids(port)) < workers:
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"{workers} workers not ready:\n{server.stderr()}")
        time.sleep(0.2)
    return server


def worker_pids(port: int) -> set[int]:
    return {pid for pid, _ in asyncio.run(probe_round(port, "/health/live", 16))}


def measure(server: ServerProcess, clients: int, args: argparse.Namespace) -> dict[str, Any]:
    requests = requests_for(Cell(1, LABELS, clients), photo_like_jpegs(64))
    processes = min(args.processes, clients)
    closed_loop(server.port, requests, clients, args.warmup_seconds, processes, args.timeout_s)
    load_before = os.getloadavg()[0]
    records = closed_loop(server.port, requests, clients, args.seconds, processes, args.timeout_s)
    figures = summarise(records, args.seconds).as_dict()
    return {"clients": clients, **figures, "load": (load_before, os.getloadavg()[0])}


def swaps_under_load(server: ServerProcess, files: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """`args.swaps` swaps while the largest client count keeps the workers busy: per swap, the time
    from the state file's write to the slowest worker serving it (clipserve_state_file_lag_seconds),
    and from the acknowledgment to every worker seen listing it on new connections."""
    import httpx

    requests = requests_for(Cell(1, LABELS, max(args.clients)), photo_like_jpegs(64))
    seconds = 6.0 + args.swaps * 2.0
    load = threading.Thread(
        target=closed_loop,
        args=(server.port, requests, max(args.clients), seconds, args.processes, args.timeout_s),
    )
    load.start()
    served, observed, pids = [], [], worker_pids(server.port)
    try:
        time.sleep(3.0)  # the load is running
        for i in range(args.swaps):
            response = httpx.post(
                f"{server.url}/admin/models/pets/swap",
                json={"file": files[i % 2]},
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                timeout=60,
            )
            acknowledged = time.monotonic()
            response.raise_for_status()
            observed.append(asyncio.run(seen_everywhere(server.port, pids, response.json()["version"])))
            observed[-1] -= acknowledged
            served.append(state_lag(server.url))
    finally:
        load.join()
    return {"swaps": args.swaps, "served": sorted(served), "observed": sorted(observed)}


async def seen_everywhere(port: int, pids: set[int], version: str) -> float:
    seen: dict[int, float] = {}
    deadline = time.monotonic() + 30
    while set(seen) != pids and time.monotonic() < deadline:
        for pid, listing in await probe_round(port, "/v1/models", 4):
            if pid not in seen and any(
                m["name"] == "pets" and m["version"] == version for m in listing["data"]
            ):
                seen[pid] = time.monotonic()
    if set(seen) != pids:
        raise RuntimeError(f"version {version} not seen on every worker within 30 s")
    return max(seen.values())


def state_lag(url: str) -> float:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url + "/metrics", timeout=10).text
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    return next(s.value for s in samples if s.name == "clipserve_state_file_lag_seconds")


def run(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    rows: list[dict[str, Any]] = []
    propagation = None
    with tempfile.TemporaryDirectory(prefix="clipserve-bench-workers-") as tmp:
        folder = Path(tmp)
        files = write_versions(folder, args.arch) if args.pretrained == "random" else []
        for workers in args.workers:
            server = start_service(args, workers, folder)
            try:
                for clients in args.clients:
                    rows.append({"workers": workers, **measure(server, clients, args)})
                    print(rows[-1], flush=True)
                if workers > 1 and files and args.swaps and propagation is None:
                    propagation = {"workers": workers, **swaps_under_load(server, files, args)}
                    print(propagation, flush=True)
            finally:
                server.stop()
    return rows, propagation


def report(args: argparse.Namespace, rows: list[dict[str, Any]], propagation: dict[str, Any] | None) -> str:
    machine = f"{cpu_model()}, {os.cpu_count()} cores"
    if args.device.startswith("cuda"):
        import torch

        machine = f"{torch.cuda.get_device_name(0)}; {machine}"
    lines = [
        f"## Worker processes: single-image requests/s with 1 to N workers ({args.device})",
        "",
        f"Command: `{command_line()}`  ",
        f"Date: {today_utc()}; machine: {machine}.  ",
        f"{args.arch} ({args.pretrained} weights); each request one 640x480 JPEG (bench/images.py) and "
        f"{LABELS} labels, multipart; closed loop, {args.warmup_seconds:.0f} s warm-up then "
        f"{args.seconds:.0f} s per row; load generator: bench/loadgen.py in up to {args.processes} "
        "processes on the same machine (it competes with the workers for the same cores). `load` is "
        "the 1-minute load average before and after the row.",
        "",
        "| workers | clients | requests/s | p50 ms | p99 ms | server p50 ms | answers | load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['workers']} | {r['clients']} | {r['ok_per_s']:.1f} | {r['p50_ms']:.1f} "
            f"| {r['p99_ms']:.1f} | {r['server_p50_ms']:.2f} | {r['codes']} "
            f"| {r['load'][0]:.1f} → {r['load'][1]:.1f} |"
        )
    lines += ["", *speedups(rows)]
    if propagation is not None:
        served, observed, n = propagation["served"], propagation["observed"], propagation["swaps"]
        lines += [
            "",
            f"Swaps under load ({propagation['workers']} workers, {max(args.clients)} clients, {n} swaps "
            "through the admin API): from the state file's write to the slowest worker serving the new "
            f"version (`clipserve_state_file_lag_seconds`): worst {served[-1]:.3f} s, median "
            f"{served[n // 2]:.3f} s; from the acknowledgment to every worker seen listing it "
            f"(/v1/models on new connections, 4 at a time): worst {observed[-1]:.3f} s, median "
            f"{observed[n // 2]:.3f} s (limit: 2 s).",
        ]
    lines += [
        "",
        f"The issue 17 goal is {GOAL_REQUESTS_PER_S:.0f} single-image requests/s at {GOAL_CLIENTS} clients "
        "on one H200 (ViT-B/32); the command for it: `make bench-workers DEVICE=cuda "
        'BENCH_ARGS="--arch ViT-B-32 --workers 1 2 4 8 --clients 64 256"` (with CUDA MPS running: '
        "docs/OPERATIONS.md).",
    ]
    return "\n".join(lines)


def speedups(rows: list[dict[str, Any]]) -> list[str]:
    one = {r["clients"]: r["ok_per_s"] for r in rows if r["workers"] == 1}
    lines = []
    for r in rows:
        if r["workers"] > 1 and one.get(r["clients"]):
            ratio = r["ok_per_s"] / one[r["clients"]]
            lines.append(f"{r['workers']} workers / 1 worker at {r['clients']} clients: {ratio:.2f}x.")
    return [" ".join(lines)] if lines else []


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--arch", default=None, help="default: ViT-B-32 on CUDA, clipserve-tiny-vit on CPU")
    parser.add_argument("--pretrained", default="random")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--clients", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per row")
    parser.add_argument("--warmup-seconds", type=float, default=3.0)
    parser.add_argument("--swaps", type=int, default=20, help="swaps under load (0: none)")
    parser.add_argument("--timeout-s", type=float, default=120.0)
    parser.add_argument("--processes", type=int, default=2, help="load-generator processes")
    parser.add_argument("--serve-args", default="", help="extra flags for clipserve serve")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "PERFORMANCE.md")
    args = parser.parse_args(argv)
    args.arch = args.arch or ("ViT-B-32" if args.device.startswith("cuda") else "clipserve-tiny-vit")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rows, propagation = run(args)
    replace_section(args.out, f"workers:{args.device.split(':')[0]}", report(args, rows, propagation))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
