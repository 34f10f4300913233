"""Episodic prototypes (ProtoCLIP): k-means on one modality's features, on the features' own
device with torch (no faiss), and Prototypical Back Translation (PBT).

k-means: k-means++ seeding, Lloyd iterations on squared Euclidean distance (faiss's default),
empty clusters re-seeded with the points farthest from their centroids, several restarts keeping
the lowest inertia. Centroids are not re-normalised (as in the reference).

PBT: a teacher's grouping, expressed in a student's space: the student prototype of cluster j is
the mean STUDENT feature of the samples the TEACHER put in cluster j. Image-space prototypes of
the text clusters and text-space prototypes of the image clusters decouple the grouping from the
cross-modal alignment, which makes the prototype losses robust to the modality gap.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Clusters:
    labels: torch.Tensor  # [N] int64 in 0..k-1
    centroids: torch.Tensor  # [k, d]
    inertia: float  # sum of squared distances to the assigned centroids


def kmeans(
    features: torch.Tensor, k: int, iterations: int = 20, restarts: int = 3, seed: int = 0
) -> Clusters:
    """Cluster [N, d] features into k groups; deterministic for a given seed and device."""
    if not 1 <= k <= len(features):
        raise ValueError(f"k must be in [1, {len(features)}] for {len(features)} samples, got {k}")
    x = features.detach().float()
    generator = torch.Generator(device="cpu").manual_seed(seed)
    best: Clusters | None = None
    for _ in range(max(1, restarts)):
        centroids = _plus_plus(x, k, generator)
        for _ in range(iterations):
            labels = _assign(x, centroids)
            centroids = _update(x, labels, centroids, k)
        labels = _assign(x, centroids)
        inertia = float(((x - centroids[labels]) ** 2).sum())
        if best is None or inertia < best.inertia:
            best = Clusters(labels, centroids, inertia)
    assert best is not None
    return best


def _plus_plus(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: each next centre drawn with probability proportional to D(x)^2."""
    first = int(torch.randint(len(x), (1,), generator=generator))
    centroids = [x[first]]
    closest = ((x - x[first]) ** 2).sum(dim=1)  # [N]
    for _ in range(1, k):
        weights = closest.clamp_min(0).cpu()
        if float(weights.sum()) <= 0:  # fewer distinct points than k: any point will do
            weights = torch.ones_like(weights)
        index = int(torch.multinomial(weights, 1, generator=generator))
        centroids.append(x[index])
        closest = torch.minimum(closest, ((x - x[index]) ** 2).sum(dim=1))
    return torch.stack(centroids)  # [k, d]


def _assign(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2; the ||x||^2 term does not change the argmin.
    scores = 2 * x @ centroids.T - (centroids**2).sum(dim=1)  # [N, k]
    return scores.argmax(dim=1)


def _update(x: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor, k: int) -> torch.Tensor:
    sums = torch.zeros_like(centroids).index_add_(0, labels, x)
    counts = torch.bincount(labels, minlength=k)
    updated = sums / counts.clamp_min(1).unsqueeze(1).to(x.dtype)
    empty = (counts == 0).nonzero().flatten()
    if len(empty):
        # Re-seed each empty cluster at one of the points worst served by its current centroid.
        errors = ((x - centroids[labels]) ** 2).sum(dim=1)
        worst = errors.topk(min(len(empty), len(x))).indices
        updated[empty[: len(worst)]] = x[worst]
    return updated


def back_translate(teacher_labels: torch.Tensor, student_features: torch.Tensor, k: int) -> torch.Tensor:
    """[k, d] PBT prototypes: the mean student feature over each teacher cluster (zeros for a
    cluster without samples)."""
    sums = torch.zeros(k, student_features.shape[1], device=student_features.device)
    sums.index_add_(0, teacher_labels, student_features.float())
    counts = torch.bincount(teacher_labels, minlength=k).clamp_min(1).unsqueeze(1)
    return sums / counts


@dataclass
class Prototypes:
    """One episode's prototype targets, fixed for the episode. For the image->text loss the
    image features are scored against `image_protos_of_text`, and the soft targets come from the
    text centroids; symmetrically for text->image. `external_*` are set with a teacher."""

    image_clusters: Clusters
    text_clusters: Clusters
    image_protos_of_text: torch.Tensor  # [k, p] image space, grouped by text clusters
    text_protos_of_image: torch.Tensor  # [k, p] text space, grouped by image clusters
    external_clusters: Clusters | None = None
    image_protos_of_external: torch.Tensor | None = None
    text_protos_of_external: torch.Tensor | None = None


def episode_prototypes(
    image: torch.Tensor,
    text: torch.Tensor,
    k: int,
    pbt: bool = True,
    teacher: torch.Tensor | None = None,
    iterations: int = 20,
    restarts: int = 3,
    seed: int = 0,
) -> Prototypes:
    """Cluster each modality's [E, p] projected features (and the teacher's [E, t] ones) and
    build the targets. Without PBT the other modality's raw centroids serve as prototypes (the
    reference's ablation), which only makes sense when both live in the same space."""
    image_clusters = kmeans(image, k, iterations, restarts, seed)
    text_clusters = kmeans(text, k, iterations, restarts, seed + 1)
    if pbt:
        image_protos = back_translate(text_clusters.labels, image, k)
        text_protos = back_translate(image_clusters.labels, text, k)
    else:
        image_protos, text_protos = text_clusters.centroids, image_clusters.centroids
    protos = Prototypes(image_clusters, text_clusters, image_protos, text_protos)
    if teacher is not None:
        external = kmeans(teacher.to(image.device), k, iterations, restarts, seed + 2)
        protos.external_clusters = external
        protos.image_protos_of_external = back_translate(external.labels, image, k)
        protos.text_protos_of_external = back_translate(external.labels, text, k)
    return protos
