"""The service's own CPU cost per request, next to the floor (issue 16): `make bench-overhead`.

Servers on loopback, run side by side in one run on the same machine:
- bare: FastAPI parsing the same multipart body and reading each image's header, answering a
  fixed JSON (bench/overhead_servers.py): what any Python server pays for the request;
- bare + decode: the same, also decoding each image with clipserve's decoder (Pillow, resize +
  crop to the model's input): what any server that looks at the pixels pays;
- clipserve with the tiny random model (clipserve-tiny-vit on the CPU);
- clipserve with the identity image encoder (bench/overhead_servers.py, bench only): everything
  the service does except model compute; once more with --max-wait-ms 0, so a batch does not wait
  for company (with 8 closed-loop clients every batch waits the full max_wait_ms otherwise).
Single-image and 32-image multipart requests of small JPEGs (64x48), 10 labels, 8 clients (closed
loop, bench/loadgen.py). Per server and shape: requests/s and server CPU microseconds per request
(the server process's user + system CPU time over the answered requests, from /proc via psutil).
The servers take turns in short slices, in a rotating order, for several rounds, so drift in the
machine's load (shared development machines) hits all of them alike; requests/s is the median
over rounds, CPU per request the total over all rounds. Then py-spy samples the identity server
under single-image load and the samples are attributed to stages (bench/overhead_profile.py).
Rewrites the `overhead` section of docs/PERFORMANCE.md.

    python bench/overhead.py                                # the full run (~5 minutes)
    python bench/overhead.py --seconds 1 --rounds 1 --no-profile --out /tmp/o.md   # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, like the Makefile

from bench.images import photo_jpeg
from bench.loadgen import closed_loop, multipart_classify, summarise
from bench.overhead_profile import profile_stages
from bench.overhead_report import report
from bench.report import replace_section
from bench.server_process import ServerProcess, clipserve_command, free_port

ROOT = Path(__file__).resolve().parents[1]
SERVERS = (
    "bare",
    "bare + decode",
    "clipserve tiny",
    "clipserve identity",
    "clipserve identity, max_wait_ms=0",
)
LABELS = ["cat", "dog", "bird", "car", "truck", "boat", "plane", "chair", "table", "lamp"]


@dataclass
class Tally:
    """One server and request shape, summed over the rounds."""

    per_round_rps: list[float] = field(default_factory=list)
    ok: int = 0
    cpu_s: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)

    def as_dict(self, images: int) -> dict[str, Any]:
        rps = statistics.median(self.per_round_rps) if self.per_round_rps else 0.0
        return {
            "requests_per_s": round(rps, 1),
            "requests_per_s_min": round(min(self.per_round_rps, default=0.0), 1),
            "requests_per_s_max": round(max(self.per_round_rps, default=0.0), 1),
            "images_per_s": round(rps * images, 1),
            "cpu_us_per_request": round(1e6 * self.cpu_s / self.ok, 1) if self.ok else None,
            "answered": self.ok,
            "non_200": self.errors,
        }


def server_cpu_s(process: ServerProcess) -> float:
    times = psutil.Process(process.pid).cpu_times()  # every thread of the process: /proc/<pid>/stat
    return float(times.user + times.system)


def requests_of(images: int, jpegs: list[bytes], variants: int = 8) -> list[bytes]:
    return [
        multipart_classify([jpegs[(v * images + i) % len(jpegs)] for i in range(images)], LABELS)
        for v in range(variants)
    ]


def start_servers(args: argparse.Namespace) -> dict[str, ServerProcess]:
    script = str(ROOT / "bench" / "overhead_servers.py")
    common = [
        "--arch", args.arch, "--pretrained", "random", "--device", "cpu", "--log-level", "warning",
        # refusals are not what this measures: room for every client's request
        "--max-inflight-requests", "4096", "--max-queue-images", "65536", *args.serve_args.split(),
    ]  # fmt: skip
    ports = [free_port() for _ in SERVERS]
    identity = [sys.executable, script, "identity"]
    commands = {
        "bare": [sys.executable, script, "bare", "--port", str(ports[0])],
        "bare + decode": [
            sys.executable,
            script,
            "bare",
            "--port",
            str(ports[1]),
            "--decode-arch",
            args.arch,
        ],
        "clipserve tiny": clipserve_command(ports[2], *common),
        "clipserve identity": [*identity, "--port", str(ports[3]), *common],
        # the same without the batcher's wait for company: what the wait costs 8 closed-loop clients
        SERVERS[4]: [*identity, "--port", str(ports[4]), *common, "--max-wait-ms", "0"],
    }
    servers: dict[str, ServerProcess] = {}
    try:
        for (name, command), port in zip(commands.items(), ports, strict=True):
            ready = "/health/ready"
            servers[name] = ServerProcess(command, port, ready_path=ready).start()
    except BaseException:
        for server in servers.values():
            server.stop()
        raise
    return servers


def measure(args: argparse.Namespace, servers: dict[str, ServerProcess]) -> dict[str, dict[str, Any]]:
    jpegs = [photo_jpeg(args.width, args.height, seed=seed) for seed in range(64)]
    shapes = {images: requests_of(images, jpegs) for images in args.images}
    tallies = {(name, images): Tally() for name in servers for images in shapes}
    for requests in shapes.values():  # warm-up: connections, label cache, batch sizes
        for server in servers.values():
            closed_loop(server.port, requests, args.clients, args.warmup_seconds, args.processes)
    names = list(servers)
    for round_number in range(args.rounds):
        order = names[round_number % len(names) :] + names[: round_number % len(names)]
        for images, requests in shapes.items():
            for name in order:
                server = servers[name]
                before = server_cpu_s(server)
                records = closed_loop(server.port, requests, args.clients, args.seconds, args.processes)
                tally = tallies[(name, images)]
                tally.cpu_s += server_cpu_s(server) - before
                summary = summarise(records, args.seconds)
                tally.per_round_rps.append(summary.ok_per_s)
                tally.ok += sum(1 for record in records if record.status == 200)
                for code, count in summary.codes.items():
                    if code != "200":
                        tally.errors[code] = tally.errors.get(code, 0) + count
    return {
        f"{name} x{images}": {"server": name, "images": images, **tally.as_dict(images)}
        for (name, images), tally in tallies.items()
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    load_average = os.getloadavg()[0]
    started = time.time()
    servers = start_servers(args)
    try:
        results = measure(args, servers)
        profile = None
        if args.profile:
            server = servers["clipserve identity"]
            profile = profile_stages(
                server.pid, server.port, requests_of(1, [photo_jpeg(args.width, args.height)]), args
            )
    finally:
        for server in servers.values():
            server.stop()
    return {
        "load_average_at_start": load_average,
        "seconds": round(time.time() - started, 1),
        "results": results,
        "profile": profile,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", default="clipserve-tiny-vit")
    parser.add_argument("--images", type=int, nargs="+", default=[1, 32], help="images per request")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--height", type=int, default=48)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--processes", type=int, default=1, help="load generator processes")
    parser.add_argument("--seconds", type=float, default=5.0, help="per server, shape and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup-seconds", type=float, default=2.0)
    parser.add_argument("--serve-args", default="", help="more `clipserve serve` flags for both clipserves")
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--profile-seconds", type=float, default=15.0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "PERFORMANCE.md")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    figures = {"command": shlex.join(["python", "bench/overhead.py", *argv]), **run(args)}
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    replace_section(args.out, "overhead", report(args, figures))
    print(json.dumps(figures["results"], indent=2))
    return figures


if __name__ == "__main__":
    main()
