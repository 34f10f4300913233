"""The ONNX Runtime image encoder for the shared lane (backend=onnx).

The stock image tower is exported once (models.onnx_export, fp32) to `onnx_path`, or to a temp
file when no path is set; an existing file is reused. Before serving, the session is checked
against the torch tower on a probe batch, so a file exported from another backbone is refused
instead of answering wrongly. CUDA execution provider when the service device is CUDA and ONNX
Runtime has it, else CPU. Lanes of methods with their own image side stay on torch.

Session options (bench/onnx_cpu.py measures them, docs/PERFORMANCE.md has the figures): all graph
optimisations; intra-op threads = torch's thread count (physical cores, or OMP_NUM_THREADS), set
explicitly because ONNX Runtime's own default counts the host's cores, not the container's; no
spin-waiting of those threads after a run, because this process also runs torch (the text encoder,
the other lanes) on the same cores, and short torch work right after a spinning ONNX Runtime run
was measured 20-60x slower (tiny model).
"""

from __future__ import annotations

import copy
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from models.backbone import Backbone
from models.onnx_export import INPUT_NAME, OUTPUT_NAME, ImageEncoder, export_image_encoder
from service.settings import ONNX_CPU_ONLY, Settings

if TYPE_CHECKING:
    import onnxruntime

log = logging.getLogger("clipserve")
# Largest |onnx - torch| on normalised embeddings accepted at start-up, by torch precision.
PROBE_TOLERANCE = {"fp32": 1e-3, "bf16": 3e-2, "fp16": 1e-2}
SPINNING = "session.intra_op.allow_spinning"


class OnnxImageEncoder:
    name = "onnx"

    def __init__(self, path: Path, device: torch.device) -> None:
        import onnxruntime

        if device.type != "cpu":
            raise ValueError(f"{ONNX_CPU_ONLY} (device={device})")
        providers = ["CPUExecutionProvider"]
        self.session = onnxruntime.InferenceSession(str(path), session_options(), providers=providers)
        self.device = device
        self.providers = self.session.get_providers()

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B, 3, S, S] normalised float on the CPU -> [B, D] normalised float32."""
        inputs = {INPUT_NAME: pixels.detach().float().numpy()}
        (features,) = self.session.run([OUTPUT_NAME], inputs)
        return torch.from_numpy(features)


def session_options() -> onnxruntime.SessionOptions:
    """The service's ONNX Runtime session options (also what the benchmark profiles)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL  # one image batch: no branches
    options.intra_op_num_threads = torch.get_num_threads()
    options.add_session_config_entry(SPINNING, "0")  # idle threads sleep: torch shares these cores
    return options


def build_onnx_encoder(settings: Settings, backbone: Backbone) -> OnnxImageEncoder:
    if backbone.device.type != "cpu":  # device=auto on a GPU machine; device=cuda is refused in Settings
        raise RuntimeError(f"{ONNX_CPU_ONLY} (the service device is {backbone.device})")
    path = settings.onnx_path or Path(tempfile.mkdtemp(prefix="clipserve-onnx-")) / "image_encoder.onnx"
    if not path.is_file():
        log.info("exporting the image encoder to %s", path)
        visual = copy.deepcopy(backbone.model.visual).float().cpu()  # export in fp32
        export_image_encoder(ImageEncoder(visual), path, backbone.preprocessing.image_size)
    encoder = OnnxImageEncoder(path, backbone.device)
    check_against_torch(encoder, backbone, path)
    log.info("ONNX image encoder %s on %s", path, ", ".join(encoder.providers))
    return encoder


def check_against_torch(encoder: OnnxImageEncoder, backbone: Backbone, path: Path) -> None:
    size = backbone.preprocessing.image_size
    probe = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(0)).to(backbone.device)
    expected = backbone.encode_images(probe)  # [4, D]
    try:
        difference = float((encoder(probe) - expected).abs().max())
    except Exception as error:  # ONNX Runtime raises its own types for shape mismatches
        raise RuntimeError(f"{path} does not fit the running backbone: {error}") from error
    tolerance = PROBE_TOLERANCE[backbone.precision]
    if difference > tolerance:
        raise RuntimeError(
            f"{path} does not match the running backbone {backbone.identity.arch} "
            f"({backbone.identity.weights}): max |onnx - torch| = {difference:.3g} > {tolerance}; "
            f"delete it (it is re-exported at start-up) or point onnx_path elsewhere"
        )
