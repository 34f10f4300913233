"""Behaviour particular to one method (the shared contract is in test_contract.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models.backbone import Backbone
from models.prompts import SHIP, Batch, GOPro, MaPLeConfig
from models.prompts.gopro import nt_xent
from models.prompts.maple import MaPLe
from tests.models.prompts.helpers import MANY_CLASSES, make_batch, make_learner, seeded_loss


def test_maple_depth_beyond_the_towers_is_a_clear_error(tiny_backbone: Backbone) -> None:
    with pytest.raises(ValueError, match="prompt_depth must be between 1 and 2"):
        MaPLe(tiny_backbone, MANY_CLASSES, MaPLeConfig(prompt_depth=9))


def test_maple_learns_coupled_prompts_for_each_prompted_block(tiny_backbone: Backbone) -> None:
    maple = make_learner("maple", tiny_backbone)
    prompts = maple.visual_prompts()  # type: ignore[operator]
    vision_width = tiny_backbone.model.visual.class_embedding.shape[-1]
    assert [tuple(p.shape) for p in prompts] == [(2, vision_width)] * 2


def test_gopro_needs_its_views(tiny_backbone: Backbone) -> None:
    gopro = make_learner("gopro", tiny_backbone).train()
    batch = make_batch(gopro)
    with pytest.raises(ValueError, match="augmix"):
        gopro.loss(Batch(labels=batch.labels, images=batch.images, views={"moco": batch.views["moco"]}))
    with pytest.raises(ValueError, match=">= 2"):
        one = {name: view[:1] for name, view in batch.views.items()}
        gopro.loss(Batch(labels=batch.labels[:1], images=batch.images[:1], views=one))  # type: ignore[index]


def test_gopro_ignores_cached_features(tiny_backbone: Backbone) -> None:
    gopro = make_learner("gopro", tiny_backbone).train()
    assert isinstance(gopro, GOPro) and not gopro.accepts_cached_features
    batch = make_batch(gopro)
    with_features = Batch(batch.labels, batch.images, torch.zeros(4, tiny_backbone.embed_dim), batch.views)
    assert torch.equal(seeded_loss(gopro, batch), seeded_loss(gopro, with_features))


def test_nt_xent_matches_simclr_with_large_negative_self_mask() -> None:
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 8, generator=generator), torch.randn(5, 8, generator=generator)
    na, nb, tau = F.normalize(a, dim=-1), F.normalize(b, dim=-1), 0.1
    mask, targets = torch.eye(5) * 1e9, torch.arange(5)
    loss_a = F.cross_entropy(torch.cat([na @ nb.t() / tau, na @ na.t() / tau - mask], 1), targets)
    loss_b = F.cross_entropy(torch.cat([nb @ na.t() / tau, nb @ nb.t() / tau - mask], 1), targets)
    torch.testing.assert_close(nt_xent(a, b, tau), (loss_a + loss_b) / 2)


def test_ship_stages_switch_what_is_trainable(tiny_backbone: Backbone) -> None:
    ship = make_learner("ship", tiny_backbone)
    assert ship.training_stages == ("generator", "classifier") and ship.stage == "generator"
    assert {n for n, p in ship.named_parameters() if p.requires_grad} == {
        n for n, _ in ship.named_parameters() if not n.startswith("classifier.")
    }
    ship.set_stage("classifier")
    assert [n for n, p in ship.named_parameters() if p.requires_grad] == ["classifier.ctx"]
    with pytest.raises(ValueError, match="training stages"):
        ship.set_stage("train")


def test_ship_synthesises_normalised_features_for_any_class_names(tiny_backbone: Backbone) -> None:
    ship = make_learner("ship", tiny_backbone)
    assert isinstance(ship, SHIP)
    features, labels = ship.synthesize(["zebra", "fire truck"], 3)
    assert features.shape == (6, tiny_backbone.embed_dim) and labels.tolist() == [0, 0, 0, 1, 1, 1]
    torch.testing.assert_close(features.norm(dim=-1), torch.ones(6))


def test_ship_label_only_classes_must_be_class_names(tiny_backbone: Backbone) -> None:
    with pytest.raises(ValueError, match="unknown"):
        make_learner("ship", tiny_backbone, label_only_classes=["unicorn"])


def test_ship_classifier_stage_adds_synthetic_label_only_samples(
    tiny_backbone: Backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    ship = make_learner("ship", tiny_backbone, synthetic_per_batch=6)
    ship.set_stage("classifier")
    seen: list[torch.Tensor] = []
    real_scores = ship.scores
    monkeypatch.setattr(ship, "scores", lambda f, c: seen.append(f) or real_scores(f, c))
    ship.loss(make_batch(ship, count=4))
    assert seen[0].shape == (4 + 6, tiny_backbone.embed_dim)


def test_ship_vae_loss_is_squared_error_plus_kl(tiny_backbone: Backbone) -> None:
    ship = make_learner("ship", tiny_backbone, kl_weight=0.0)
    assert isinstance(ship, SHIP)
    features = F.normalize(torch.randn(3, tiny_backbone.embed_dim), dim=-1)
    labels = torch.tensor([0, 1, 2])
    torch.manual_seed(0)
    loss = ship.vae_loss(features, labels)
    torch.manual_seed(0)
    mean, log_var = ship.encoder(features)
    z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
    reconstructed = ship._decode(z, ship._prompts.select(labels))
    torch.testing.assert_close(loss, ((reconstructed - features) ** 2).sum(1).mean())
