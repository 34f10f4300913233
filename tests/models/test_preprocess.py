"""The one preprocessing (models/preprocess.py): training's evaluation transform is open_clip's own,
and the service's path (resize + crop on decode threads, uint8, normalised on the device) gives
the same model input up to the rounding of the resized image to 8 bits."""

from __future__ import annotations

import pytest
import torch
from open_clip.transform import image_transform
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

from models.backbone import Preprocessing
from models.preprocess import Normalise, eval_transform, interpolation_mode, normalise_pixels, resize_crop
from service.engine.decode import DecodeLimits, Decoder
from training.data.transforms import train_transform

PREPROCESSING = [
    Preprocessing(32, (0.48, 0.46, 0.41), (0.27, 0.26, 0.28), "bicubic", "shortest"),
    Preprocessing(24, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear", "longest"),
    Preprocessing(20, (0.4, 0.45, 0.5), (0.2, 0.25, 0.3), "bicubic", "squash"),
]


def photo(width: int = 53, height: int = 37) -> Image.Image:
    """A non-square image with structure in every channel, so crops and filters show."""
    x = torch.arange(width).view(1, -1).expand(height, -1)
    y = torch.arange(height).view(-1, 1).expand(-1, width)
    channels = torch.stack([(x * 5) % 256, (y * 7) % 256, ((x + y) * 3) % 256], dim=-1)
    return Image.fromarray(channels.to(torch.uint8).numpy(), "RGB")


@pytest.mark.parametrize("pre", PREPROCESSING, ids=lambda p: p.resize_mode)
def test_the_eval_transform_is_open_clips(pre: Preprocessing) -> None:
    reference = image_transform(
        pre.image_size,
        is_train=False,
        mean=pre.mean,
        std=pre.std,
        resize_mode=pre.resize_mode,
        interpolation=pre.interpolation,
    )
    image = photo()
    assert torch.equal(eval_transform(pre)(image), reference(image))


@pytest.mark.parametrize("pre", PREPROCESSING, ids=lambda p: p.resize_mode)
def test_the_service_path_gives_the_training_input(pre: Preprocessing) -> None:
    image = photo()
    pixels = pil_to_tensor(resize_crop(pre)(image)).unsqueeze(0)  # [1, 3, S, S] uint8, as decoded
    served = Normalise(pre, torch.device("cpu"))(pixels)[0]
    trained = eval_transform(pre)(image)
    assert served.shape == trained.shape == (3, pre.image_size, pre.image_size)
    # Both resize the same PIL image; only the service's uint8 step may differ (half a level).
    half_level = 0.5 / 255 / min(pre.std)
    assert float((served - trained).abs().max()) <= half_level + 1e-6
    decoder = Decoder(pre, DecodeLimits(max_pixels=10**6, formats=("PNG",)), threads=1)
    try:
        assert torch.equal(pil_to_tensor(decoder.resize(image)), pixels[0])  # the service resizes so
    finally:
        decoder.close()


def test_normalisation_is_written_once_and_never_in_place() -> None:
    pixels = torch.tensor([[[[0, 255]], [[51, 102]], [[128, 7]]]], dtype=torch.uint8)  # [1, 3, 1, 2]
    mean = torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)
    std = torch.tensor([0.5, 0.25, 0.125]).view(1, 3, 1, 1)
    expected = torch.empty(1, 3, 1, 2)
    for c in range(3):
        for j in range(2):
            expected[0, c, 0, j] = (int(pixels[0, c, 0, j]) / 255 - float(mean[0, c])) / float(std[0, c])
    before = pixels.clone()
    torch.testing.assert_close(normalise_pixels(pixels, mean, std), expected)
    assert torch.equal(pixels, before)
    floats = pixels.float()
    normalise_pixels(floats, mean, std)
    assert torch.equal(floats, before.float())  # a float input is not divided in place either


def test_training_crops_resample_with_the_backbones_filter() -> None:
    bilinear = PREPROCESSING[1]
    assert interpolation_mode(bilinear).value == "bilinear"
    assert interpolation_mode(PREPROCESSING[0]).value == "bicubic"
    crop = train_transform(bilinear, "rrc_flip", (0.5, 1.0)).transforms[0]  # type: ignore[attr-defined]
    assert crop.interpolation == interpolation_mode(bilinear)
