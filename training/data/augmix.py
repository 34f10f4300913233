"""AugMix (Hendrycks et al., ICLR'20) as GOPro's reference code uses it for its third view.

Three chains of 1-3 operations each, drawn uniformly from the AugMix paper's list (the ops that
overlap ImageNet-C, i.e. colour, contrast, brightness and sharpness, are left out), mixed with
Dirichlet(1, 1, 1) weights and blended with the un-augmented image by m ~ Beta(1, 1). Each op draws
its level uniformly in [0.1, severity] and scales it to its own maximum by level / 10, as AugMix's
code does; GOPro runs severity 1 (small rotations, shears and shifts, mild solarize and posterize).

torchvision's T.AugMix is not used: it picks magnitudes from 10 bins indexed by randint(severity),
so at severity 1 every geometric op gets magnitude 0 and the view would barely change.

All randomness comes from torch's global generator, which the training dataset seeds per sample.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image, ImageOps
from torchvision.transforms import functional as TF

OPERATIONS = (
    "autocontrast",
    "equalize",
    "posterize",
    "rotate",
    "solarize",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
)


def op_argument(name: str, level: float, size: int) -> float:
    """The op's parameter for a level in [0.1, severity] (before a random sign where it has one)."""
    scaled = {
        "posterize": 4 - int(level * 4 / 10),  # bits kept
        "rotate": int(level * 30 / 10),  # degrees
        "solarize": 256 - int(level * 256 / 10),  # threshold
        "shear_x": level * 0.3 / 10,
        "shear_y": level * 0.3 / 10,
        "translate_x": int(level * (size / 3) / 10),  # pixels
        "translate_y": int(level * (size / 3) / 10),
    }
    return float(scaled.get(name, 0.0))


def apply_op(image: Image.Image, name: str, argument: float, sign: float) -> Image.Image:
    bilinear = Image.Resampling.BILINEAR
    affine = {
        "shear_x": (1, sign * argument, 0, 0, 1, 0),
        "shear_y": (1, 0, 0, sign * argument, 1, 0),
        "translate_x": (1, 0, sign * argument, 0, 1, 0),
        "translate_y": (1, 0, 0, 0, 1, sign * argument),
    }
    if name in affine:
        return image.transform(image.size, Image.Transform.AFFINE, affine[name], resample=bilinear)
    ops: dict[str, Callable[[], Image.Image]] = {
        "autocontrast": lambda: ImageOps.autocontrast(image),
        "equalize": lambda: ImageOps.equalize(image),
        "posterize": lambda: ImageOps.posterize(image, int(argument)),
        "rotate": lambda: image.rotate(sign * argument, resample=bilinear),
        "solarize": lambda: ImageOps.solarize(image, int(argument)),
    }
    return ops[name]()


class AugMix:
    """PIL image -> [3, H, W] float tensor in [0, 1] (normalise afterwards, like ToTensor)."""

    def __init__(self, severity: float = 1.0, width: int = 3, max_depth: int = 3) -> None:
        self.severity, self.width, self.max_depth = severity, width, max_depth

    def __call__(self, image: Image.Image) -> torch.Tensor:
        weights = torch.distributions.Dirichlet(torch.ones(self.width)).sample()  # [width]
        blend = float(torch.distributions.Beta(1.0, 1.0).sample())
        mixed = torch.zeros_like(TF.to_tensor(image))
        for k in range(self.width):
            chain = image
            for _ in range(int(torch.randint(1, self.max_depth + 1, ()))):
                chain = self._random_op(chain)
            mixed += weights[k] * TF.to_tensor(chain)
        return blend * TF.to_tensor(image) + (1 - blend) * mixed

    def _random_op(self, image: Image.Image) -> Image.Image:
        name = OPERATIONS[int(torch.randint(len(OPERATIONS), ()))]
        level = 0.1 + (self.severity - 0.1) * float(torch.rand(()))
        sign = -1.0 if float(torch.rand(())) > 0.5 else 1.0
        return apply_op(image, name, op_argument(name, level, image.size[0]), sign)
