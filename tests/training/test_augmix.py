"""GOPro's AugMix view: the AugMix paper's nine operations at severity 1, levels scaled as in the
AugMix code, chains mixed convexly with the un-augmented image."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torchvision.transforms import functional as TF

from models.backbone import Preprocessing
from training.data import augmix
from training.data.augmix import AugMix, op_argument
from training.data.transforms import view_transforms

PRE = Preprocessing(image_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def picture(seed: int = 0) -> Image.Image:
    pixels = torch.randint(
        0, 256, (32, 32, 3), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8
    )
    return Image.fromarray(pixels.numpy())


def test_the_view_uses_the_nine_augmix_operations_at_severity_one() -> None:
    assert augmix.OPERATIONS == (
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
    steps = view_transforms(("augmix",), PRE)["augmix"].transforms  # type: ignore[attr-defined]
    mixers = [step for step in steps if isinstance(step, AugMix)]
    assert len(mixers) == 1 and (mixers[0].severity, mixers[0].width, mixers[0].max_depth) == (1.0, 3, 3)


@pytest.mark.parametrize(
    ("name", "level", "expected"),
    [
        # AugMix's code: int_parameter(level, max) = int(level * max / 10), float_parameter likewise.
        ("rotate", 1.0, 3),
        ("rotate", 0.5, 1),
        ("rotate", 0.1, 0),
        ("shear_x", 1.0, 0.03),
        ("shear_y", 0.5, 0.015),
        ("translate_x", 1.0, 7),  # int(224 / 3 / 10)
        ("translate_y", 0.1, 0),
        ("posterize", 1.0, 4),  # bits kept: 4 - int(0.4)
        ("solarize", 1.0, 231),  # threshold: 256 - int(25.6)
        ("solarize", 0.1, 254),
        ("autocontrast", 1.0, 0),
    ],
)
def test_levels_scale_to_each_operations_maximum(name: str, level: float, expected: float) -> None:
    assert op_argument(name, level, 224) == pytest.approx(expected)


def test_the_chains_are_blended_convexly_with_the_image(monkeypatch: pytest.MonkeyPatch) -> None:
    image = picture()
    monkeypatch.setattr(augmix, "apply_op", lambda img, name, argument, sign: img)
    torch.testing.assert_close(AugMix()(image), TF.to_tensor(image))  # weights sum to one
    black = Image.new("RGB", image.size)
    monkeypatch.setattr(augmix, "apply_op", lambda img, name, argument, sign: black)
    out, original = AugMix()(image), TF.to_tensor(image)
    ratio = out[original > 0.1] / original[original > 0.1]
    assert 0 < float(ratio.mean()) < 1 and float(ratio.std()) < 1e-5  # m * image, m ~ Beta(1, 1)


def test_augmix_is_a_function_of_the_seed() -> None:
    image = picture(1)
    torch.manual_seed(3)
    first = AugMix()(image)
    torch.manual_seed(3)
    assert torch.equal(first, AugMix()(image))
    assert not torch.equal(first, TF.to_tensor(image))
