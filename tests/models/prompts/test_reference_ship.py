"""SHIP against the plain restatement in reference_ship.py, with every learned tensor perturbed:
the VAE loss (KL in closed form, weight 1), synthesis as a plain decode of ctx + G(z), and the
second stage's cross-entropy over real plus synthetic features of label-only classes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models.backbone import Backbone
from models.prompts import SHIP, Batch, SHIPConfig
from tests.models.perturbed import perturb
from tests.models.prompts import reference_ship as ref

NAMES = ["cat", "golden_retriever", "red fox", "airplane", "hot air balloon"]
LABEL_ONLY = [3, 4]  # airplane, hot air balloon: no images, synthesised
LABELS = [0, 2, 1, 2]
TOL = {"rtol": 1e-5, "atol": 1e-5}
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ship(math_backbone: Backbone) -> SHIP:
    config = SHIPConfig(
        label_only_classes=[NAMES[i] for i in LABEL_ONLY],
        latent_dim=12,
        encoder_hidden=24,
        generator_hidden=20,
        synthetic_per_batch=6,
    )
    torch.manual_seed(0)
    learner = SHIP(math_backbone, NAMES, config)
    perturb(learner, seed=51, scale=0.2)  # the N(0, 0.02) VAE init would make z nearly irrelevant
    return learner


def real_batch() -> Batch:
    features = F.normalize(torch.randn(4, 48, generator=torch.Generator().manual_seed(3)), dim=-1)
    return Batch(labels=torch.tensor(LABELS), features=features)


def test_vae_loss_is_reconstruction_plus_the_closed_form_kl_at_weight_one(
    ship: SHIP, math_backbone: Backbone
) -> None:
    assert SHIPConfig().kl_weight == 1.0 and ship.config.kl_weight == 1.0
    ship.set_stage("generator")
    batch = real_batch()
    torch.manual_seed(7)
    with torch.no_grad():
        loss = ship.loss(batch)
    torch.manual_seed(7)
    noise = torch.randn(4, 12)  # the reparameterisation's eps, one row per sample
    with torch.no_grad():
        expected = ref.vae_loss(math_backbone.model, ship, batch.features, LABELS, noise)
    torch.testing.assert_close(loss, expected, **TOL)


def test_a_synthesised_feature_is_a_plain_decode_of_ctx_plus_g_of_z(
    ship: SHIP, math_backbone: Backbone
) -> None:
    names = ["zebra", "fire truck"]
    torch.manual_seed(8)
    features, labels = ship.synthesize(names, 2)
    torch.manual_seed(8)
    latents = torch.randn(4, 12)
    assert labels.tolist() == [0, 0, 1, 1]
    with torch.no_grad():
        for row, (z, label) in enumerate(zip(latents, labels.tolist(), strict=True)):
            torch.testing.assert_close(
                features[row], ref.decode(math_backbone.model, ship, z, names[label]), **TOL
            )
    assert (features[0] - features[1]).abs().max() > 1e-3  # z matters


def test_second_stage_mixes_real_and_synthetic_label_only_features(
    ship: SHIP, math_backbone: Backbone
) -> None:
    ship.set_stage("classifier")
    batch = real_batch()
    torch.manual_seed(9)
    with torch.no_grad():
        loss = ship.loss(batch)
    torch.manual_seed(9)
    picks = torch.randint(len(LABEL_ONLY), (6,))  # uniform over the label-only classes
    latents = torch.randn(6, 12)
    synthetic_labels = [LABEL_ONLY[int(p)] for p in picks]
    with torch.no_grad():
        expected = ref.classifier_loss(
            math_backbone.model, ship, batch.features, LABELS, synthetic_labels, latents
        )
    torch.testing.assert_close(loss, expected, **TOL)


def test_synthetic_labels_come_only_from_label_only_classes(
    ship: SHIP, monkeypatch: pytest.MonkeyPatch
) -> None:
    ship.set_stage("classifier")
    seen: list[torch.Tensor] = []
    cross_entropy = F.cross_entropy
    monkeypatch.setattr(
        F, "cross_entropy", lambda logits, labels: seen.append(labels) or cross_entropy(logits, labels)
    )
    monkeypatch.setattr(ship.config, "synthetic_per_batch", 40)
    with torch.no_grad():
        ship.loss(real_batch())
    labels = seen[0].tolist()
    assert labels[:4] == LABELS and len(labels) == 4 + 40
    assert set(labels[4:]) == set(LABEL_ONLY)  # both drawn, nothing else
