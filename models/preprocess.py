"""The image preprocessing that training and serving must share, defined once: open_clip's
evaluation resize + centre crop for the backbone, and normalisation with its mean and std.

- `resize_crop`: PIL image -> PIL image at the model's resolution. The service runs it on decode
  threads (and the same torchvision ops on GPU tensors), then normalises whole batches on the
  device with `Normalise`.
- `to_normalised_tensor`: the last steps of every training view (PIL -> normalised tensor).
- `eval_transform` = resize_crop + to_normalised_tensor: evaluation, validation, cached features,
  pretraining pools. It equals open_clip's own validation transform (tested).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from open_clip.transform import image_transform
from PIL import Image
from torchvision import transforms as T

from models.backbone import Preprocessing

Transform = Callable[[Image.Image], torch.Tensor]


def resize_crop(pre: Preprocessing) -> Callable[[Image.Image], Image.Image]:
    """open_clip's eval transform up to (not including) ToTensor + Normalize."""
    full = image_transform(
        pre.image_size,
        is_train=False,
        mean=pre.mean,
        std=pre.std,
        resize_mode=pre.resize_mode,
        interpolation=pre.interpolation,
    )
    return T.Compose(full.transforms[:-2])


def to_normalised_tensor(pre: Preprocessing) -> list[Callable[..., torch.Tensor]]:
    return [T.ToTensor(), T.Normalize(pre.mean, pre.std)]


def eval_transform(pre: Preprocessing) -> Transform:
    """PIL image -> [3, S, S] normalised float: the pixels the service feeds the image tower."""
    return T.Compose([resize_crop(pre), *to_normalised_tensor(pre)])


def interpolation_mode(pre: Preprocessing) -> T.InterpolationMode:
    """The resampling filter of `resize_crop`, for training crops (open_clip: bilinear or bicubic)."""
    return T.InterpolationMode.BILINEAR if pre.interpolation == "bilinear" else T.InterpolationMode.BICUBIC


def normalise_pixels(pixels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """[B, 3, S, S] uint8 -> float, (x / 255 - mean) / std; mean and std [1, 3, 1, 1] or [3, 1, 1].
    Never writes into `pixels` (the copy to float is the one allocation)."""
    return (pixels.to(torch.float32, copy=True).div_(255) - mean) / std


class Normalise:
    """[B, 3, S, S] uint8 on the device -> [B, 3, S, S] float32 normalised, on the same device.

    Mean and std are put on the device once: building them per batch with torch.tensor(...,
    device=cuda) would be a blocking host-to-device copy on every pass.
    """

    def __init__(self, preprocessing: Preprocessing, device: torch.device) -> None:
        self.mean = torch.tensor(preprocessing.mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(preprocessing.std, device=device).view(1, 3, 1, 1)

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        return normalise_pixels(pixels, self.mean, self.std)
