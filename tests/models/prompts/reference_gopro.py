"""GOPro (Singha et al., BMVC'23) restated plainly, from the paper and its reference code.

Per image and per ViT block l (its output tokens, class token included, T of them):
  mu_l = (1/T) sum_t x_t,  sigma_l = sqrt((sum_t (x_t - mu_l)^2 + eps) / T),
  mix_l = (S_l((mu_l + sigma_l) / 2) + K_l(mu_l)) / 2,  v = sum_l rho_l mix_l + rho_0,
  context vector k of the image = ctx_k + v; class features as CoCoOp; logits = scale f . t.
Loss = CE(original view)
     + w_cons * [mean_(b,c,d) (T - T_moco)^2 + mean_(b,c,d) (T - T_augmix)^2]
     + w_con * NT-Xent_tau(P(f), P(f_moco)), P = Linear then BatchNorm over the batch (training).
NT-Xent: for row i of view a, the positive is row i of view b; the negatives are every other row
of view b and every other row of view a; symmetric in a and b.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from tests.models.prompts.reference_coop import class_features, scaled_cosines, shifted
from tests.models.reference_clip import cross_entropy, image_feature, linear, normalised


def block_statistics(tokens: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, sigma) [Wv] of one block's output tokens [T, Wv], token by token."""
    count = tokens.shape[0]
    total = sum((tokens[t] for t in range(count)), torch.zeros(tokens.shape[1]))
    mean = total / count
    squares = sum(((tokens[t] - mean) ** 2 for t in range(count)), torch.zeros(tokens.shape[1]))
    return mean, torch.sqrt((squares + eps) / count)


def prompt_shift(learner: torch.nn.Module, outputs: Sequence[torch.Tensor], eps: float) -> torch.Tensor:
    """v [W] from every block's output tokens of one image."""
    mixes = []
    for index, tokens in enumerate(outputs):
        mean, sigma = block_statistics(tokens, eps)
        style = linear((mean + sigma) / 2, learner.style[index])
        content = linear(mean, learner.content[index])
        mixes.append((style + content) / 2)
    weights, bias = learner.rho.weight[0], learner.rho.bias[0]  # [L], scalar
    return sum((weights[i] * mixes[i] for i in range(len(mixes))), bias * torch.ones_like(mixes[0]))


def view(
    clip: torch.nn.Module, learner: torch.nn.Module, images: torch.Tensor, classnames: Sequence[str]
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Per image of one view: normalised features [B, D], its context vectors, its [C, D] classes."""
    features, contexts, matrices = [], [], []
    for image in images:
        feature, outputs = image_feature(clip, image)
        context = torch.stack(shifted(learner.ctx, prompt_shift(learner, outputs, learner.config.sigma_eps)))
        features.append(normalised(feature))
        contexts.append(context)
        matrices.append(class_features(clip, context, classnames))
    return torch.stack(features), contexts, matrices


def batch_norm_train(x: torch.Tensor, norm: torch.nn.BatchNorm1d) -> torch.Tensor:
    """BatchNorm with the batch's own statistics (biased variance), as in training."""
    mean = x.mean(dim=0)
    variance = ((x - mean) ** 2).mean(dim=0)
    return (x - mean) / torch.sqrt(variance + norm.eps) * norm.weight + norm.bias


def nt_xent(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    """Row by row, both directions (see the module docstring)."""
    a, b = normalised(a), normalised(b)
    rows = a.shape[0]
    losses = []
    for anchor, partner, own in ((a, b, a), (b, a, b)):
        for i in range(rows):
            positive = math.e ** ((anchor[i] * partner[i]).sum() / tau)
            others = [(anchor[i] * partner[j]).sum() for j in range(rows) if j != i]
            others += [(anchor[i] * own[j]).sum() for j in range(rows) if j != i]
            negatives = sum(math.e ** (s / tau) for s in others)
            losses.append(-torch.log(positive / (positive + negatives)))
    return torch.stack(losses[:rows]).mean() / 2 + torch.stack(losses[rows:]).mean() / 2


def loss_terms(
    clip: torch.nn.Module,
    learner: torch.nn.Module,
    views: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    labels: Sequence[int],
) -> dict[str, torch.Tensor]:
    """The three terms, unweighted: cross-entropy, consistency, NT-Xent."""
    names = learner.classnames
    images, moco, augmix = views
    features, _, matrices = view(clip, learner, images, names)
    moco_features, _, moco_matrices = view(clip, learner, moco, names)
    _, _, augmix_matrices = view(clip, learner, augmix, names)
    logits = [scaled_cosines(clip, f, matrix) for f, matrix in zip(features, matrices, strict=True)]
    first = torch.stack([(t - m) ** 2 for t, m in zip(matrices, moco_matrices, strict=True)]).mean()
    second = torch.stack([(t - m) ** 2 for t, m in zip(matrices, augmix_matrices, strict=True)]).mean()
    projector, norm = learner.image_projector
    projected = batch_norm_train(linear(features, projector), norm)
    projected_moco = batch_norm_train(linear(moco_features, projector), norm)
    return {
        "ce": cross_entropy(logits, labels),
        "consistency": first + second,
        "contrastive": nt_xent(projected, projected_moco, learner.config.temperature),
    }
