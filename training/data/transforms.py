"""Image transforms: the Dassl/CoOp training augmentations and the named extra views a method can
ask for (PromptLearner.extra_views). The evaluation preprocessing, and the normalisation every view
ends with, are the ones the service uses: models/preprocess.py defines them once.

Every view is built from the RAW decoded image (GOPro's reference code augmented already
normalised tensors, which clips values; methods.md §4), and every one ends with the backbone's
mean/std so all views live in the space the image tower was trained on.
"""

from __future__ import annotations

from collections.abc import Callable

from torchvision import transforms as T

from models.backbone import Preprocessing
from models.preprocess import Transform, eval_transform, interpolation_mode, to_normalised_tensor
from training.data.augmix import AugMix
from training.hparams import AUGMENTATIONS

__all__ = ["AUGMENTATIONS", "VIEWS", "Transform", "eval_transform", "train_transform", "view_transforms"]

GOPRO_AUGMIX_SEVERITY = 1.0  # GOPro's AugMixAugmenter default, used for its training view


def train_transform(pre: Preprocessing, augment: str, rrc_scale: tuple[float, float]) -> Transform:
    """Dassl's "random_resized_crop, random_flip, normalize" (scale (0.08, 1), bicubic); "flip"
    keeps the eval crop and only flips; "none" is the eval transform (features can be cached)."""
    if augment not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {augment!r}")
    if augment == "none":
        return eval_transform(pre)
    if augment == "flip":
        return T.Compose([T.RandomHorizontalFlip(), eval_transform(pre)])
    return T.Compose(
        [
            T.RandomResizedCrop(pre.image_size, scale=rrc_scale, interpolation=interpolation_mode(pre)),
            T.RandomHorizontalFlip(),
            *to_normalised_tensor(pre),
        ]
    )


def _moco_view(pre: Preprocessing) -> Transform:
    # MoCo v3 / GOPro: RRC (0.08, 1), colour jitter p=.8, grayscale p=.2, blur sigma in [.1, 2], flip.
    return T.Compose(
        [
            T.RandomResizedCrop(pre.image_size, scale=(0.08, 1.0), interpolation=interpolation_mode(pre)),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
            T.RandomGrayscale(p=0.2),
            T.GaussianBlur(kernel_size=_odd(pre.image_size // 10), sigma=(0.1, 2.0)),
            T.RandomHorizontalFlip(),
            *to_normalised_tensor(pre),
        ]
    )


def _augmix_view(pre: Preprocessing) -> Transform:
    # GOPro's AugMix view: RRC + flip, then AugMix at severity 1 over the AugMix paper's nine ops,
    # 3 chains of 1-3 ops mixed with Dirichlet(1)/Beta(1) (augmix.py says why not T.AugMix).
    return T.Compose(
        [
            T.RandomResizedCrop(pre.image_size, interpolation=interpolation_mode(pre)),
            T.RandomHorizontalFlip(),
            AugMix(severity=GOPRO_AUGMIX_SEVERITY),
            T.Normalize(pre.mean, pre.std),
        ]
    )


VIEWS: dict[str, Callable[[Preprocessing], Transform]] = {"moco": _moco_view, "augmix": _augmix_view}


def view_transforms(names: tuple[str, ...], pre: Preprocessing) -> dict[str, Transform]:
    unknown = [name for name in names if name not in VIEWS]
    if unknown:
        raise ValueError(f"unknown extra views {unknown}; the data pipeline builds {sorted(VIEWS)}")
    return {name: VIEWS[name](pre) for name in names}


def _odd(size: int) -> int:
    return max(3, size // 2 * 2 + 1)
