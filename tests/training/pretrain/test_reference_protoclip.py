"""ProtoCLIP's forward pass and whole objective against the plain restatement in
reference_protoclip.py, on a perturbed three-block tiny CLIP with perturbed heads and two distinct
temperatures; PBT, soft targets from the teacher side, the external teacher and every weight."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models.backbone import build_backbone
from models.text import tokenize
from tests.models.perturbed import perturb, perturbed_backbone
from tests.training.pretrain import reference_protoclip as ref
from training.distributed import DistContext
from training.pretrain.config import PretrainConfig
from training.pretrain.losses import soft_targets
from training.pretrain.model import PretrainModel
from training.pretrain.prototypes import Prototypes, episode_prototypes
from training.pretrain.steps import StepBatch, build_optimizer, objective

CAPTIONS = [
    "a red circle",
    "a small blue square on a striped background",
    "green star",
    "a sketch of a pink heart",
    "orange arrow at the top",
    "a photo of a cyan cross",
]
POSITIONS = [5, 0, 9, 3, 7, 1]  # the batch rows' places in a 10-sample episode
TOL = {"rtol": 1e-5, "atol": 1e-5}


@pytest.fixture(scope="module")
def model() -> PretrainModel:
    backbone = perturbed_backbone(seed=5)
    torch.manual_seed(0)
    model = PretrainModel(backbone, heads=True, hidden=24, proto_dim=10)
    perturb(model, seed=61)  # the heads' BatchNorm gains and biases too
    with torch.no_grad():
        model.clip.logit_scale.fill_(math.log(13.0))
        model.logit_scale_proto.fill_(math.log(6.0))
    return model.train()


@pytest.fixture(scope="module")
def batch(model: PretrainModel) -> StepBatch:
    tokenized = tokenize(model.backbone, CAPTIONS)
    length = int(tokenized.eot_index.max()) + 1
    pixels = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    return StepBatch(pixels, tokenized.tokens[:, :length], tokenized.eot_index, torch.tensor(POSITIONS), 6, 0)


def episode(teacher: bool, pbt: bool = True) -> tuple[torch.Tensor, torch.Tensor, Prototypes]:
    generator = torch.Generator().manual_seed(2)
    image = F.normalize(torch.randn(10, 10, generator=generator), dim=-1)
    text = F.normalize(torch.randn(10, 10, generator=generator), dim=-1)
    external = F.normalize(torch.randn(10, 5, generator=generator), dim=-1) if teacher else None
    protos = episode_prototypes(image, text, 3, pbt=pbt, teacher=external, iterations=5, restarts=1, seed=0)
    return image, text, protos


def reference_features(model: PretrainModel, batch: StepBatch) -> dict[str, torch.Tensor]:
    eot = [row.tolist().index(ref.EOT) for row in batch.tokens]  # found in the ids, not taken
    with torch.no_grad():
        return ref.features(model, batch.pixels, batch.tokens, torch.tensor(eot))


def test_forward_equals_the_plain_towers_and_heads(model: PretrainModel, batch: StepBatch) -> None:
    with torch.no_grad():
        got = model(batch.pixels, batch.tokens, batch.eot)
    expected = reference_features(model, batch)
    for name in ("image", "text", "image_proj", "text_proj"):
        torch.testing.assert_close(getattr(got, name), expected[name], **TOL, msg=name)


@pytest.mark.parametrize("teacher", [True, False], ids=["external-teacher", "no-teacher"])
def test_objective_equals_the_plain_composition(
    teacher: bool, model: PretrainModel, batch: StepBatch
) -> None:
    image, text, protos = episode(teacher)
    clusters = {
        "image": (protos.image_clusters.labels.tolist(), protos.image_clusters.centroids),
        "text": (protos.text_clusters.labels.tolist(), protos.text_clusters.centroids),
    }
    if teacher:
        assert protos.external_clusters is not None
        clusters["external"] = (protos.external_clusters.labels.tolist(), protos.external_clusters.centroids)
    config = PretrainConfig(w_clip=0.6, w_proto=1.3, w_external=0.45, target_temperature=0.3)
    with torch.no_grad():
        total, parts = objective(model, batch, protos, config, DistContext())
        expected = ref.objective(
            reference_features(model, batch),
            (image, text),
            clusters,
            POSITIONS,
            (torch.tensor(13.0), torch.tensor(6.0)),
            (0.6, 1.3, 0.45),
            0.3,
        )
    for name in ("clip", "proto", "external"):
        torch.testing.assert_close(parts[name], expected[name], **TOL, msg=name)
    torch.testing.assert_close(total, expected["total"], **TOL)
    assert (expected["external"] > 0.1) == teacher and expected["proto"] > 0.1


def test_soft_targets_come_from_the_teacher_centroids() -> None:
    centroids = torch.randn(4, 6, generator=torch.Generator().manual_seed(3))
    labels = [2, 0, 2, 3]
    for tau in (0.01, 0.3):
        expected = torch.stack([ref.soft_target(centroids, label, tau) for label in labels])
        torch.testing.assert_close(soft_targets(centroids, torch.tensor(labels), tau), expected, **TOL)


def test_without_pbt_the_other_modalitys_centroids_are_the_prototypes() -> None:
    _, _, protos = episode(teacher=False, pbt=False)
    assert torch.equal(protos.image_protos_of_text, protos.text_clusters.centroids)
    assert torch.equal(protos.text_protos_of_image, protos.image_clusters.centroids)


def reference_decays(name: str, parameter: torch.Tensor) -> bool:
    """ProtoCLIP's rule: no decay for < 2 dims, norm layers, biases, temperatures, the heads."""
    exempt = ("bn", "ln", "bias", "logit_scale", "image_head", "text_head")
    return parameter.ndim >= 2 and not any(word in name for word in exempt)


def test_weight_decay_groups_follow_the_reference() -> None:
    backbone = build_backbone("clipserve-tiny-vit", None)
    model = PretrainModel(backbone, heads=True, hidden=8, proto_dim=4)
    optimizer = build_optimizer(model, PretrainConfig(weight_decay=0.3), model.visual_parameters())
    group_of = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    names = dict(model.named_parameters())
    for name, parameter in names.items():
        group = group_of[id(parameter)]
        assert group["weight_decay"] == (0.3 if reference_decays(name, parameter) else 0.0), name
        assert group["visual"] == name.startswith("clip.visual."), name
    decayed = {name for name, p in names.items() if group_of[id(p)]["weight_decay"] > 0}
    assert {
        "clip.positional_embedding",
        "clip.visual.positional_embedding",
        "clip.token_embedding.weight",
    } <= decayed
    assert not decayed & {"clip.visual.class_embedding", "image_head.0.weight", "text_head.3.weight"}
