"""Pretraining on the tiny CLIP: the loss goes down, ProtoCLIP's episodes run, a killed run resumes
to the same weights, and the result is a `backbone` checkpoint that build_backbone loads."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import clipserve_cli
from models.backbone import Backbone, build_backbone
from models.checkpoint import load_checkpoint
from tests.training.pretrain.conftest import TINY
from training.distributed import DistContext
from training.pretrain.config import PretrainConfig
from training.pretrain.loop import PretrainOptions, pretrain
from training.pretrain.model import PretrainModel
from training.pretrain.pool import Pool
from training.pretrain.run import RunOptions, load_teacher, run_pretraining
from training.pretrain.steps import StepBatch, objective
from training.pretrain_cmd import add_arguments, config_from_args


def tiny_config(**overrides: object) -> PretrainConfig:
    fields: dict = {
        "arch": TINY,
        "pool_size": 64,
        "episodes": 3,
        "episode_size": 64,
        "batch_size": 16,
        "k": 8,
        "kmeans_iterations": 5,
        "kmeans_restarts": 1,
        "proto_hidden": 32,
        "proto_dim": 16,
        "lr": 2e-3,
        "warmup_fraction": 0.0,
        "eval_per_class": 1,
        "final_eval_per_class": 1,
        "probe_per_class": 1,
    }
    fields.update(overrides)
    return PretrainConfig(**fields)


def fresh_model(config: PretrainConfig) -> tuple[Backbone, PretrainModel]:
    backbone = build_backbone(config.arch, None, seed=config.seed)
    torch.manual_seed(config.seed)
    return backbone, PretrainModel(
        backbone, config.method == "protoclip", config.proto_hidden, config.proto_dim
    )


def batch_loss(model: PretrainModel, pool: Pool, config: PretrainConfig) -> float:
    rows = torch.arange(32)
    batch = StepBatch(
        pool.images(rows, torch.device("cpu")), *pool.texts(rows, torch.device("cpu")), rows, 32, 0
    )
    model.eval()
    with torch.no_grad():
        return float(objective(model, batch, None, config, DistContext())[0])


@pytest.mark.parametrize("method", ["infonce", "protoclip"])
def test_a_few_steps_lower_the_loss(method: str, pool: Pool, tmp_path: Path) -> None:
    config = tiny_config(method=method)
    _, model = fresh_model(config)
    before = batch_loss(model, pool, config)
    result = pretrain(model, pool, config, DistContext(), PretrainOptions(tmp_path, progress=False))
    assert result.steps == 12 and result.episodes_run == 3
    assert all(torch.isfinite(torch.tensor(result.losses)))
    assert batch_loss(model, pool, config) < before - 0.1


def test_protoclip_episodes_use_prototypes_after_the_warmup_and_lit_freezes_the_image_tower(
    pool: Pool, tmp_path: Path
) -> None:
    config = tiny_config(method="protoclip", lit_episodes=1, episodes=4)
    assert [config.uses_prototypes(e) for e in range(4)] == [False, True, True, False]
    _, model = fresh_model(config)
    snapshot: dict[str, list[torch.Tensor]] = {}

    def before_lit(step: int, loss: float) -> None:
        if step == 3 * config.steps_per_episode - 1:  # the last step of episode 3
            snapshot["visual"] = [p.detach().clone() for p in model.clip.visual.parameters()]
            snapshot["text"] = [p.detach().clone() for p in model.clip.transformer.parameters()]

    options = PretrainOptions(tmp_path, progress=False, log_every=1, step_hook=before_lit)
    pretrain(model, pool, config, DistContext(), options)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    episodes = [r for r in records if r["event"] == "episode"]
    assert [r["prototypes"] for r in episodes] == [False, True, True, False]
    assert [r["lit"] for r in episodes] == [False, False, False, True]
    assert all(r["proto"] > 0 for r in episodes[1:3]) and "proto" not in episodes[0]
    assert all(
        torch.equal(a, b) for a, b in zip(snapshot["visual"], model.clip.visual.parameters(), strict=True)
    )
    assert any(
        not torch.equal(a, b)
        for a, b in zip(snapshot["text"], model.clip.transformer.parameters(), strict=True)
    )


def test_a_killed_run_resumes_to_the_same_weights(pool: Pool, tmp_path: Path) -> None:
    config = tiny_config(method="protoclip")
    _, straight = fresh_model(config)
    pretrain(straight, pool, config, DistContext(), PretrainOptions(tmp_path / "a", progress=False))

    class Killed(Exception):
        pass

    def kill(step: int, loss: float) -> None:
        if step == 9:  # inside episode 3, after episodes 1 and 2 were saved
            raise Killed

    _, first = fresh_model(config)
    with pytest.raises(Killed):
        pretrain(
            first,
            pool,
            config,
            DistContext(),
            PretrainOptions(tmp_path / "b", progress=False, step_hook=kill),
        )
    _, resumed = fresh_model(config)
    result = pretrain(resumed, pool, config, DistContext(), PretrainOptions(tmp_path / "b", progress=False))
    assert result.episodes_run == 1
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name


def test_run_writes_a_backbone_checkpoint_that_build_backbone_loads(tmp_path: Path) -> None:
    config = tiny_config(method="infonce", episodes=1)
    path, _, scores = run_pretraining(
        config, DistContext(), RunOptions(tmp_path, progress=False, save_dtype="fp16")
    )
    checkpoint = load_checkpoint(path)
    header = checkpoint.header
    assert header.kind == "backbone" and header.method == "infonce"
    assert header.provenance["seed"] == 1 and header.provenance["steps"] == 4
    assert set(scores) <= set(header.metrics) and "zero_shot_heldout_photo" in header.metrics
    assert len(header.classnames) == 64 and checkpoint.class_embeddings is not None
    assert all(t.dtype in (torch.float16, torch.int64) for t in checkpoint.tensors.values())
    loaded = build_backbone(TINY, str(path))
    assert loaded.identity.weights.startswith("sha256:")
    assert not loaded.model.training and not any(p.requires_grad for p in loaded.model.parameters())


def test_the_cli_exposes_every_setting() -> None:
    parser = clipserve_cli.build_parser()
    assert "pretrain" in clipserve_cli.COMMANDS
    import argparse

    sub = argparse.ArgumentParser()
    add_arguments(sub)
    args = sub.parse_args(
        ["--out", "x", "--method", "infonce", "--k", "7", "--no-pbt", "--betas", "0.9", "0.99"]
    )
    config = config_from_args(args)
    assert (
        config.method == "infonce" and config.k == 7 and config.pbt is False and config.betas == (0.9, 0.99)
    )
    assert (
        dataclasses.replace(config, method="protoclip", k=None, pbt=True, betas=(0.9, 0.98))
        == PretrainConfig()
    )
    assert parser.prog == "clipserve"


def test_an_external_teacher_adds_its_prototype_loss(pool: Pool, tmp_path: Path) -> None:
    features = torch.randn(len(pool), 12, generator=torch.Generator().manual_seed(0))
    path = tmp_path / "teacher.npy"
    np.save(path, features.numpy())
    teacher = load_teacher(str(path), len(pool), torch.device("cpu"))
    assert teacher is not None
    rows = torch.tensor([3, 1, 3])
    assert torch.allclose(teacher(rows), F.normalize(features[rows], dim=-1))
    config = tiny_config(method="protoclip", episodes=2)
    _, model = fresh_model(config)
    options = PretrainOptions(tmp_path / "run", progress=False, teacher=teacher)
    pretrain(model, pool, config, DistContext(), options)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["external"] > 0 for r in records if r["event"] == "episode" and r["prototypes"]] == [True]
    with pytest.raises(ValueError, match="teacher features"):
        load_teacher(str(path), len(pool) + 1, torch.device("cpu"))
