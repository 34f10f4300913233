"""k-means, Prototypical Back Translation and the prototype losses on toy inputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from training.pretrain.losses import clip_loss, proto_loss, soft_targets
from training.pretrain.prototypes import back_translate, episode_prototypes, kmeans


def blobs(
    groups: int = 4, per_group: int = 25, dim: int = 8, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(groups, dim, generator=generator) * 5
    labels = torch.arange(groups).repeat_interleave(per_group)
    return centres[labels] + 0.1 * torch.randn(len(labels), dim, generator=generator), labels


def purity(found: torch.Tensor, truth: torch.Tensor) -> float:
    """Share of points whose cluster's majority true label is their own."""
    correct = 0
    for cluster in found.unique():
        members = truth[found == cluster]
        correct += int(members.bincount().max())
    return correct / len(truth)


def test_kmeans_recovers_separated_blobs() -> None:
    x, truth = blobs()
    clusters = kmeans(x, 4, iterations=10, restarts=2, seed=0)
    assert purity(clusters.labels, truth) == 1.0
    assert len(clusters.labels.unique()) == 4
    assert clusters.centroids.shape == (4, 8)
    for cluster in range(4):  # centroids are the means of their members
        assert torch.allclose(clusters.centroids[cluster], x[clusters.labels == cluster].mean(0), atol=1e-5)


def test_kmeans_is_deterministic_and_restarts_never_hurt() -> None:
    x, _ = blobs(groups=6, per_group=10, seed=3)
    a, b = kmeans(x, 6, seed=7), kmeans(x, 6, seed=7)
    assert torch.equal(a.labels, b.labels)
    assert kmeans(x, 6, restarts=4, seed=7).inertia <= kmeans(x, 6, restarts=1, seed=7).inertia + 1e-6


def test_kmeans_edge_cases() -> None:
    x, _ = blobs(groups=2, per_group=3)
    assert len(kmeans(x, len(x)).labels.unique()) == len(x)  # k = N: every point its own cluster
    duplicates = torch.zeros(10, 4)
    assert kmeans(duplicates, 3).inertia == 0.0  # fewer distinct points than k does not crash
    with pytest.raises(ValueError, match="k must be"):
        kmeans(x, len(x) + 1)


def test_back_translation_averages_student_features_over_teacher_clusters() -> None:
    teacher = torch.tensor([0, 0, 1, 2, 2, 2])
    student = torch.arange(12, dtype=torch.float32).view(6, 2)
    protos = back_translate(teacher, student, k=4)
    assert torch.allclose(protos[0], student[:2].mean(0))
    assert torch.allclose(protos[1], student[2])
    assert torch.allclose(protos[2], student[3:].mean(0))
    assert torch.equal(protos[3], torch.zeros(2))  # a cluster without samples


def test_episode_prototypes_translate_each_grouping_into_the_other_space() -> None:
    image, truth = blobs(groups=3, per_group=8, dim=6, seed=1)
    text = -image + 100  # another space, same grouping
    protos = episode_prototypes(image, text, k=3, iterations=10, restarts=1)
    assert purity(protos.image_clusters.labels, truth) == purity(protos.text_clusters.labels, truth) == 1.0
    # Image-space prototypes of the TEXT clusters live in the image space.
    expected = back_translate(protos.text_clusters.labels, image, 3)
    assert torch.allclose(protos.image_protos_of_text, expected)
    assert protos.external_clusters is None
    teacher = torch.randn(len(image), 5)
    with_teacher = episode_prototypes(image, text, k=3, teacher=teacher, iterations=5, restarts=1)
    assert with_teacher.image_protos_of_external is not None
    assert with_teacher.image_protos_of_external.shape == (3, 6)


def test_soft_targets_are_distributions_that_sharpen_with_low_temperature() -> None:
    centroids = F.normalize(torch.randn(5, 4, generator=torch.Generator().manual_seed(0)), dim=1)
    labels = torch.tensor([0, 3])
    warm, cold = soft_targets(centroids, labels, 1.0), soft_targets(centroids, labels, 0.01)
    assert torch.allclose(warm.sum(1), torch.ones(2)) and torch.allclose(cold.sum(1), torch.ones(2))
    assert torch.equal(cold.argmax(1), labels)  # a centroid is most similar to itself
    assert (cold.max(1).values > warm.max(1).values).all()


def test_proto_loss_prefers_features_at_their_clusters_prototype() -> None:
    prototypes = torch.eye(3)
    labels = torch.tensor([0, 1, 2])
    scale = torch.tensor(10.0)
    right = proto_loss(torch.eye(3), prototypes, torch.eye(3), labels, scale, 0.01)
    wrong = proto_loss(torch.eye(3).roll(1, 0), prototypes, torch.eye(3), labels, scale, 0.01)
    assert right < wrong
    hard = proto_loss(torch.eye(3), prototypes, torch.eye(3), labels, scale, -1)
    assert torch.allclose(hard, F.cross_entropy(scale * torch.eye(3), labels))
    # Orthogonal centroids at tau=0.01 make the soft targets one-hot: soft equals hard.
    assert torch.allclose(right, hard, atol=1e-4)


def test_clip_loss_is_low_for_matched_pairs_and_log_b_for_noise() -> None:
    features = F.normalize(torch.randn(8, 16, generator=torch.Generator().manual_seed(0)), dim=1)
    matched = clip_loss(features, features, torch.tensor(100.0))
    shuffled = clip_loss(features, features.roll(1, 0), torch.tensor(100.0))
    assert matched < 0.01 < shuffled
    uniform = clip_loss(features, features, torch.tensor(0.0))
    assert math.isclose(float(uniform), math.log(8), rel_tol=1e-5)
