"""How good a pretrained backbone is on the world: zero-shot accuracy on held-out images (the 64
class names through the templates, CLIP's protocol) and linear-probe accuracy (a logistic
regression on frozen image features of training-split photos, scored on held-out photos)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from models.backbone import Backbone
from models.zeroshot import class_embedding_matrix
from training.feeds import autocast
from training.pretrain.pool import Pool


@torch.no_grad()
def image_features(backbone: Backbone, pool: Pool, batch_size: int = 512) -> torch.Tensor:
    """[N, D] normalised image features of every pool image (fp32)."""
    backbone.model.eval()
    parts = []
    for start in range(0, len(pool), batch_size):
        rows = torch.arange(start, min(start + batch_size, len(pool)))
        with autocast(backbone.device):
            parts.append(backbone.encode_images(pool.images(rows, backbone.device)))
    return torch.cat(parts) if parts else torch.zeros(0, backbone.embed_dim)


@torch.no_grad()
def zero_shot_accuracy(
    backbone: Backbone, pool: Pool, classnames: Sequence[str], templates: Sequence[str]
) -> float:
    """Top-1 accuracy (%) of classifying the pool's images among `classnames`."""
    backbone.model.eval()
    with autocast(backbone.device):
        classes = class_embedding_matrix(backbone, classnames, list(templates))  # [C, D]
    predictions = (image_features(backbone, pool) @ classes.float().T).argmax(dim=1).cpu()
    return 100.0 * float((predictions == pool.labels).float().mean())


class LinearProbe:
    """Multinomial logistic regression (L-BFGS, full batch, L2 penalty) on frozen features, which
    are standardised with the training set's mean and std."""

    def __init__(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        classes: int,
        weight_decay: float = 1e-4,
        steps: int = 300,
    ) -> None:
        x, y = features.detach().float().cpu(), labels.cpu()
        self.mean, self.std = x.mean(0), x.std(0).clamp_min(1e-6)
        x = (x - self.mean) / self.std
        weight = torch.zeros(x.shape[1], classes, requires_grad=True)
        bias = torch.zeros(classes, requires_grad=True)
        optimizer = torch.optim.LBFGS([weight, bias], lr=1, max_iter=steps, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = F.cross_entropy(x @ weight + bias, y) + weight_decay * (weight**2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        self.weight, self.bias = weight.detach(), bias.detach()

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """[N] predicted class ids."""
        x = (features.detach().float().cpu() - self.mean) / self.std
        return (x @ self.weight + self.bias).argmax(dim=1)

    def accuracy(self, features: torch.Tensor, labels: torch.Tensor) -> float:
        return 100.0 * float((self.predict(features) == labels.cpu()).float().mean())


def linear_probe_accuracy(
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    classes: int,
    weight_decay: float = 1e-4,
    steps: int = 300,
) -> float:
    """Test accuracy (%) of a LinearProbe fitted on `train`."""
    return LinearProbe(*train, classes, weight_decay, steps).accuracy(*test)
