"""Where a server's CPU goes, by stage: py-spy samples of the live process under load, attributed
to the stages of the data path (DESIGN.md, "The data path of one /classify request").

py-spy (https://github.com/benfred/py-spy) reads the interpreter's stacks from outside the process
(`py-spy record --format raw`: one line per distinct stack, "frame;frame;... count", outermost
first); idle threads are left out, so the samples are where CPU time went. `--nonblocking` does not
pause the server to sample it, so the profile does not slow what it measures. Each sample goes to
the first stage whose pattern matches one of its frames, in the order of STAGES (the innermost
specific stage wins over the framework that called it).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from bench.loadgen import closed_loop, summarise

# stage -> substrings of a frame ("function (path:line)"). A sample goes to the stage of its
# innermost frame that matches any pattern (walking out from where the CPU was), so uvicorn writing
# an answer counts as framework although clipserve's middleware is further out on the stack.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("serialise", ("json_response.py", "orjson", "json/encoder.py")),
    ("score: softmax + top-k", ("service/api/classify.py", "service/api/protocols/")),
    ("decode (Pillow)", ("service/engine/decode.py", "image_header.py", "PIL/", "torchvision/transforms",
                         "preprocess.py")),
    ("parse (multipart, fields)", ("service/api/multipart.py", "service/api/parse.py")),
    ("encode (image encoder)", ("encode_identity (", "encode_images (", "open_clip/")),
    ("batcher (queue, normalise, copies)", ("service/engine/batcher.py", "service/engine/device_io.py")),
    ("text cache", ("service/catalog/",)),
    ("metrics", ("prometheus_client/", "service/metrics.py", "service/process_stats.py")),
    ("thread hand-offs (submit, wake, wait)", ("threading.py", "queue.py", "concurrent/futures/",
                                               "anyio/", "_chain_future")),
    ("service middleware", ("service/api/",)),
    ("framework (uvicorn, starlette, fastapi, asyncio)", ("uvicorn/", "starlette/", "fastapi/", "asyncio/",
                                                         "uvloop", "httptools", "pydantic")),
)  # fmt: skip
OTHER = "other"


def stage_of(stack: str) -> str:
    for frame in reversed(stack.split(";")):
        for stage, patterns in STAGES:
            if any(pattern in frame for pattern in patterns):
                return stage
    return OTHER


def attribute(raw: str) -> dict[str, int]:
    """py-spy raw output -> samples per stage."""
    counts: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            counts[stage_of(stack)] += int(count)
    return dict(counts)


STAGE_METRIC = re.compile(
    r'^clipserve_stage_duration_seconds_(sum|count)\{stage="(\w+)"\} (\S+)$', re.MULTILINE
)


def stage_totals(port: int) -> dict[tuple[str, str], float]:
    """(sum | count, stage) -> value of the service's own per-stage histogram (service/metrics.py)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {(kind, stage): float(value) for kind, stage, value in STAGE_METRIC.findall(text)}


def wall_ms(before: dict[tuple[str, str], float], after: dict[tuple[str, str], float]) -> dict[str, float]:
    """Mean milliseconds per observation of each stage between two snapshots: wall time, which is
    where the batch wait shows (`queue`: enqueued to the pass's start; `encode`: one pass)."""
    means = {}
    for kind, stage in after:
        if kind == "sum":
            count = after[("count", stage)] - before.get(("count", stage), 0.0)
            if count > 0:
                means[stage] = round(
                    1000 * (after[(kind, stage)] - before.get((kind, stage), 0.0)) / count, 3
                )
    return means


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def profile_stages(
    pid: int, port: int, requests: Sequence[bytes], args: argparse.Namespace
) -> dict[str, Any]:
    """Two py-spy runs of `args.profile_seconds` each while `args.clients` clients send
    `requests`: every busy thread (where the CPU goes), then only the thread holding the GIL
    (`--gil`: what bounds one process's requests/s, since Python code runs one thread at a time)."""
    binary = py_spy()
    if binary is None:
        return {"error": "py-spy is not installed (.venv/bin/pip install py-spy)"}
    runs = {}
    for name, extra in (("busy threads", []), ("GIL holder", ["--gil"])):
        runs[name] = _record(binary, pid, port, requests, args, extra)
        if "error" in runs[name]:
            return runs[name]
    return runs


def _record(
    binary: str, pid: int, port: int, requests: Sequence[bytes], args: argparse.Namespace, extra: list[str]
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        raw_path = Path(folder) / "stacks.txt"
        command = [
            binary, "record", "--pid", str(pid), "--duration", str(int(args.profile_seconds)),
            "--rate", "250", "--format", "raw", "--nonblocking", *extra, "--output", str(raw_path),
        ]  # fmt: skip
        sampler = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        before = stage_totals(port)
        records = closed_loop(port, requests, args.clients, args.profile_seconds, args.processes)
        after = stage_totals(port)
        _, error = sampler.communicate(timeout=args.profile_seconds + 60)
        if sampler.returncode != 0 or not raw_path.exists():
            return {"error": f"py-spy failed ({sampler.returncode}): {error.decode(errors='replace')[-500:]}"}
        raw = raw_path.read_text()
    if args.json is not None:
        suffix = "gil" if extra else "busy"
        args.json.with_name(f"{args.json.stem}.stacks-{suffix}.txt").write_text(raw)
    samples = attribute(raw)
    total = sum(samples.values())
    return {
        "command": " ".join(["py-spy", *command[1:-2]]).replace(str(pid), "PID"),
        "samples": total,
        "requests_per_s": round(summarise(records, args.profile_seconds).ok_per_s, 1),
        "wall_ms_per_stage": wall_ms(before, after),
        "stages": {stage: round(n / total, 3) for stage, n in sorted(samples.items(), key=lambda i: -i[1])},
    }
