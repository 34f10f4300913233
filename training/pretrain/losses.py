"""The pretraining objective: symmetric InfoNCE, plus ProtoCLIP's prototype-level losses.

    L = w_clip * L_clip + w_proto * L_proto + w_external * L_external

L_clip: CLIP's symmetric InfoNCE over the batch (instance discrimination).
L_proto = (L_i->t + L_t->i) / 2. For L_i->t, the student logits of an image are
    s_p * g_img . P_img^T, with P_img the image-space prototypes of the TEXT clusters (PBT), and the
    target of a sample in text cluster j is softmax_m(c_j . c_m / tau) over the text centroids c
    (soft targets; tau = the target temperature, 0.01 in the paper). tau <= 0 gives hard labels.
L_external: the same with an external teacher's clusters and hard labels (as the reference).
All features here are L2-normalised; s = exp(logit scale), clamped to <= 100 by the caller.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def clip_loss(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE; image/text: [B, D] normalised, pair i is (image[i], text[i])."""
    logits = logit_scale * image @ text.T  # [B, B]
    target = torch.arange(len(image), device=image.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def soft_targets(centroids: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """[B, k] target distributions: how close each sample's cluster centroid is to every centroid."""
    return F.softmax(centroids[labels] @ centroids.T / temperature, dim=1)


def proto_loss(
    features: torch.Tensor,
    prototypes: torch.Tensor,
    teacher_centroids: torch.Tensor,
    teacher_labels: torch.Tensor,
    logit_scale: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """Cross-entropy of the student's prototype logits against the teacher's (soft) targets.

    features: [B, p] student features; prototypes: [k, p] student-space prototypes of the
    teacher's clusters; teacher_centroids: [k, t]; teacher_labels: [B] the teacher's cluster of
    each sample."""
    logits = logit_scale * features @ prototypes.T  # [B, k]
    if temperature > 0:
        target = soft_targets(teacher_centroids.float(), teacher_labels, temperature)
        return F.cross_entropy(logits.float(), target)
    return F.cross_entropy(logits.float(), teacher_labels)


def prototype_accuracy(features: torch.Tensor, prototypes: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of samples whose nearest prototype is their teacher cluster (a training signal)."""
    return float(((features @ prototypes.T).argmax(dim=1) == labels).float().mean())
