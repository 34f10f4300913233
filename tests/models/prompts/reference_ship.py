"""SHIP (Wang et al., ICCV'23) restated plainly: a VAE whose decoder is generator -> prompt ->
frozen text tower, then CoOp on real plus synthesised features.

Encoder: h = relu(W x + b), mu = W_mu h + b_mu, log sigma^2 = W_v h + b_v. z = mu + sigma * eps.
Decoder: b = G(z) (Linear, ReLU, Linear); prompt [SOS] [p_1 + b .. p_n + b] [class] [.] [EOT];
x_hat = norm(text(prompt)). Loss per sample: sum_d (x_hat - x)^2 + KL, with the closed form
KL(N(mu, sigma^2) || N(0, 1)) = 1/2 sum_d (sigma^2 + mu^2 - 1 - log sigma^2); mean over samples.
Stage two: the batch's real features plus synthetic ones for label-only classes (z ~ N(0, I)),
scored against CoOp's class features of ALL classes; cross-entropy.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tests.models.prompts.reference_coop import class_features, scaled_cosines, shifted
from tests.models.reference_clip import cross_entropy, linear


def encode(learner: torch.nn.Module, feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, log sigma^2) of one feature [D]."""
    encoder = learner.encoder
    hidden = torch.clamp(linear(feature, encoder.net[0]), min=0)
    return linear(hidden, encoder.mean), linear(hidden, encoder.log_var)


def decode(clip: torch.nn.Module, learner: torch.nn.Module, z: torch.Tensor, classname: str) -> torch.Tensor:
    """One synthetic normalised feature [D] of class `classname` from one latent z."""
    generator = learner.generator
    bias = linear(torch.clamp(linear(z, generator[0]), min=0), generator[2])  # [W]
    context = torch.stack(shifted(learner.ctx, bias))
    return class_features(clip, context, [classname])[0]


def kl_closed_form(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    variance = torch.exp(log_var)
    return 0.5 * (variance + mean**2 - 1 - log_var).sum()


def vae_loss(
    clip: torch.nn.Module,
    learner: torch.nn.Module,
    features: torch.Tensor,
    labels: Sequence[int],
    noise: torch.Tensor,
    kl_weight: float = 1.0,
) -> torch.Tensor:
    losses = []
    for feature, label, eps in zip(features, labels, noise, strict=True):
        mean, log_var = encode(learner, feature)
        z = mean + torch.sqrt(torch.exp(log_var)) * eps
        rebuilt = decode(clip, learner, z, learner.classnames[label])
        losses.append(((rebuilt - feature) ** 2).sum() + kl_weight * kl_closed_form(mean, log_var))
    return torch.stack(losses).mean()


def classifier_loss(
    clip: torch.nn.Module,
    learner: torch.nn.Module,
    features: torch.Tensor,
    labels: Sequence[int],
    synthetic_labels: Sequence[int],
    latents: torch.Tensor,
) -> torch.Tensor:
    """Cross-entropy over all classes on real features plus one synthetic feature per latent."""
    names = learner.classnames
    synthetic = [decode(clip, learner, z, names[y]) for z, y in zip(latents, synthetic_labels, strict=True)]
    classes = class_features(clip, learner.classifier.ctx, names)  # the stage-two CoOp
    rows = [*features, *synthetic]
    logits = [scaled_cosines(clip, row, classes) for row in rows]
    return cross_entropy(logits, [*labels, *synthetic_labels])
