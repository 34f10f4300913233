"""Where an image encoder's time goes: self time per operator, for torch eager and ONNX Runtime.

torch: torch.profiler's self CPU time per aten op. ONNX Runtime: the session's own per-node
profile (`enable_profiling`), summed per operator type. Both are shown as shares of the total, so
the two runtimes can be compared op class by op class (GEMMs, attention, LayerNorm, GELU, ...).
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile


@dataclass(frozen=True)
class OpShare:
    op: str
    seconds: float  # self time summed over the profiled calls
    share: float  # of the profiled total


def torch_profile(
    encode: Callable[[torch.Tensor], torch.Tensor], pixels: torch.Tensor, runs: int
) -> list[OpShare]:
    """Self CPU time per aten op over `runs` calls (after one untimed call)."""
    encode(pixels)
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(runs):
            encode(pixels)
    totals = Counter({event.key: event.self_cpu_time_total / 1e6 for event in profiler.key_averages()})
    return _shares(totals)


def onnx_profile(model_path: Path, session_options: object, pixels: torch.Tensor, runs: int) -> list[OpShare]:
    """Kernel time per ONNX operator type over `runs` calls (after one untimed call), from ORT's
    own profile. `session_options` are the service's (copied onto a profiling session)."""
    import onnxruntime

    from models.onnx_export import INPUT_NAME, OUTPUT_NAME

    assert isinstance(session_options, onnxruntime.SessionOptions)
    with tempfile.TemporaryDirectory(prefix="clipserve-ort-profile-") as folder:
        session_options.enable_profiling = True
        session_options.profile_file_prefix = str(Path(folder) / "ort")
        session = onnxruntime.InferenceSession(
            str(model_path), session_options, providers=["CPUExecutionProvider"]
        )
        inputs = {INPUT_NAME: pixels.float().numpy()}
        session.run([OUTPUT_NAME], inputs)
        for _ in range(runs):
            session.run([OUTPUT_NAME], inputs)
        events = json.loads(Path(session.end_profiling()).read_text())
    return _shares(_kernel_seconds(events, skip_first_run=True))


def _kernel_seconds(events: list[dict[str, object]], skip_first_run: bool) -> Counter[str]:
    """Sum the `*_kernel_time` node events per op type; the first (warm-up) run is dropped."""
    runs = sorted(float(str(e["ts"])) for e in events if e.get("name") == "model_run")
    start = runs[1] if skip_first_run and len(runs) > 1 else float("-inf")
    totals: Counter[str] = Counter()
    for event in events:
        if event.get("cat") != "Node" or not str(event.get("name", "")).endswith("_kernel_time"):
            continue
        if float(str(event["ts"])) < start:
            continue
        args = event.get("args")
        op = str(args.get("op_name", "?")) if isinstance(args, dict) else "?"
        totals[op] += float(str(event["dur"])) / 1e6
    return totals


def _shares(totals: Counter[str]) -> list[OpShare]:
    total = sum(totals.values()) or 1.0
    return [OpShare(op, seconds, seconds / total) for op, seconds in totals.most_common() if seconds > 0]


def top_ops_table(label: str, shares: list[OpShare], runs: int, limit: int = 8) -> str:
    """Markdown rows: the `limit` largest ops, then the rest as one row."""
    rows = [f"| {label} op | self time per call | share |", "|---|---|---|"]
    for item in shares[:limit]:
        rows.append(f"| `{item.op}` | {item.seconds / runs * 1e3:.1f} ms | {item.share:.0%} |")
    rest = shares[limit:]
    if rest:
        seconds = sum(item.seconds for item in rest)
        rows.append(
            f"| {len(rest)} others | {seconds / runs * 1e3:.1f} ms | {sum(i.share for i in rest):.0%} |"
        )
    return "\n".join(rows)
