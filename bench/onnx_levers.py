"""ONNX Runtime's CPU levers, each measured interleaved with torch eager at one batch size.

Every variant runs the same exported model (or a rewrite of it) on the same pixels; each repeat
times torch and then every variant back to back, so the speed-up of a variant is the median of
its per-repeat ratios to torch. Agreement with torch is reported per variant: the int8 model is a
different model (weights rounded to 8 bits), so its speed can only count if its cosines stay close.

ONNX Runtime's default session (threads that spin-wait after a run) is timed in a loop of its own
with torch: its spinning threads slow whatever runs next in the process, torch or another session,
so in the shared loop it would distort its neighbours. That loop also gives torch's time when it
runs right after a spinning session, the cost the service avoids by turning spinning off.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.onnx_export import INPUT_NAME, OUTPUT_NAME
from service.engine.onnx_backend import session_options

LEVER_BATCH = 8
SERVICE = "service session"
SPINNING_DEFAULT = "ONNX Runtime's default session (own loop)"
Run = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class LeverResult:
    name: str
    images_per_s: float  # median
    speedup: float  # median per-repeat ratio torch time / this variant's time
    max_abs_diff: float  # vs torch, normalised embeddings
    min_cosine: float  # vs torch, over the batch
    note: str = ""


@dataclass(frozen=True)
class Levers:
    results: list[LeverResult]
    torch_after_spinning_s: float  # median torch call right after an ORT-default (spinning) run
    torch_after_service_s: float  # median torch call right after a run of the service's session


def measure_levers(
    onnx_path: Path, torch_encode: Callable[[torch.Tensor], torch.Tensor], pixels: torch.Tensor, repeats: int
) -> Levers:
    import onnxruntime

    with tempfile.TemporaryDirectory(prefix="clipserve-onnx-levers-") as folder:
        optimized, fused = transformer_optimized(onnx_path, Path(folder) / "optimized.onnx")
        quantized = dynamic_int8(onnx_path, Path(folder) / "int8.onnx")
        basic = session_options()
        basic.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
        variants: dict[str, tuple[Run, str]] = {
            SERVICE: (
                _runner(onnx_path, session_options()),
                "ORT_ENABLE_ALL, threads = torch's, no spinning",
            ),
            "basic graph optimisations only": (_runner(onnx_path, basic), ""),
            "IO binding (output bound once)": (_bound_runner(onnx_path), ""),
            "ORT transformer optimizer (model_type vit)": (_runner(optimized, session_options()), fused),
            "dynamic int8 weights (a different model)": (
                _runner(quantized, session_options()),
                "MatMul only",
            ),
        }
        shared = _time_variants(variants, torch_encode, pixels, repeats)
        default = {SPINNING_DEFAULT: (_runner(onnx_path, onnxruntime.SessionOptions()), "spinning threads")}
        spinning = _time_variants(default, torch_encode, pixels, repeats)
    return Levers(
        results=[*shared.results, *spinning.results[1:]],
        torch_after_spinning_s=spinning.torch_after_last_s,
        torch_after_service_s=shared.torch_after_last_s,
    )


def transformer_optimized(source: Path, target: Path) -> tuple[Path, str]:
    """onnxruntime.transformers' fusions for ViTs; returns the file and what it fused."""
    from onnxruntime.transformers.optimizer import optimize_model

    # num_heads/hidden_size 0: detected from the graph; opt_level 0: fusions only, ORT does the rest.
    model = optimize_model(str(source), model_type="vit", num_heads=0, hidden_size=0, opt_level=0)
    fused = {op: count for op, count in model.get_fused_operator_statistics().items() if count}
    model.save_model_to_file(str(target))
    return target, ", ".join(f"{op} ×{count}" for op, count in fused.items()) or "nothing fused"


def dynamic_int8(source: Path, target: Path) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
    return target


def _runner(path: Path, options: object) -> Run:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda pixels: session.run([OUTPUT_NAME], {INPUT_NAME: pixels})[0]


def _bound_runner(path: Path) -> Run:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])
    binding = session.io_binding()
    binding.bind_output(OUTPUT_NAME, "cpu")

    def run(pixels: np.ndarray) -> np.ndarray:
        binding.bind_cpu_input(INPUT_NAME, pixels)
        session.run_with_iobinding(binding)
        return np.asarray(binding.copy_outputs_to_cpu()[0])

    return run


@dataclass(frozen=True)
class _Loop:
    results: list[LeverResult]
    torch_after_last_s: float  # median torch call, each right after the previous repeat's last variant


def _time_variants(
    variants: dict[str, tuple[Run, str]],
    torch_encode: Callable[[torch.Tensor], torch.Tensor],
    pixels: torch.Tensor,
    repeats: int,
) -> _Loop:
    array = pixels.float().numpy()
    reference = torch_encode(pixels)  # [B, D] normalised; also torch's untimed call
    # Untimed calls, ending with the last variant so that torch's first timed call follows it too.
    outputs = {name: torch.from_numpy(run(array)) for name, (run, _) in variants.items()}
    seconds: dict[str, list[float]] = {name: [] for name in ["torch", *variants]}
    for _ in range(repeats):
        start = time.perf_counter()
        torch_encode(pixels)
        seconds["torch"].append(time.perf_counter() - start)
        for name, (run, _) in variants.items():
            start = time.perf_counter()
            run(array)
            seconds[name].append(time.perf_counter() - start)
    batch = pixels.shape[0]
    results = [
        LeverResult("torch eager (reference)", batch / statistics.median(seconds["torch"]), 1.0, 0.0, 1.0)
    ]
    for name, (_, note) in variants.items():
        ratios = [t / o for t, o in zip(seconds["torch"], seconds[name], strict=True)]
        cosine = F.cosine_similarity(outputs[name], reference, dim=-1)  # [B]
        results.append(
            LeverResult(
                name=name,
                images_per_s=batch / statistics.median(seconds[name]),
                speedup=statistics.median(ratios),
                max_abs_diff=float((outputs[name] - reference).abs().max()),
                min_cosine=float(cosine.min()),
                note=note,
            )
        )
    return _Loop(results, statistics.median(seconds["torch"]))
