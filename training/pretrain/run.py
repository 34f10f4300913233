"""`clipserve pretrain` as a function: the world's training pool -> the episodic loop -> the final
evaluation -> one `backbone` checkpoint in the one format (models/checkpoint.py)."""

from __future__ import annotations

import json
import logging
import platform
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.backbone import Backbone, BackboneIdentity, build_backbone
from models.checkpoint import Checkpoint, CheckpointHeader, save_checkpoint
from models.zeroshot import class_embedding_matrix
from training.checkpoints import CHECKPOINT_FILE
from training.distributed import DistContext, barrier, broadcast_parameters
from training.pretrain.config import PretrainConfig, RunOptions, validate
from training.pretrain.episodes import Teacher
from training.pretrain.evaluate import image_features, linear_probe_accuracy, zero_shot_accuracy
from training.pretrain.loop import PretrainOptions, PretrainResult, pretrain
from training.pretrain.model import PretrainModel
from training.pretrain.pool import Pool, cached_pool
from training.pretrain.steps import check_batch_split
from training.runlog import require_tensorboard
from training.state import fingerprint
from training.world import World, WorldConfig

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
SAVE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}  # keys: SaveDtype


def run_pretraining(
    config: PretrainConfig, ctx: DistContext, run: RunOptions, step_hook: Any = None
) -> tuple[Path, PretrainResult, dict[str, float]]:
    """Pretrain; the main process writes OUT/checkpoint.safetensors. Returns (path, result, scores)."""
    config = validate(config)
    check_batch_split(config, ctx.world_size)
    if run.tensorboard is not None:
        require_tensorboard()
    started = time.perf_counter()
    backbone = build_backbone(config.arch, config.init, "fp32", ctx.device, seed=config.seed)
    torch.manual_seed(config.seed)
    model = PretrainModel(backbone, config.method == "protoclip", config.proto_hidden, config.proto_dim)
    model.to(ctx.device)
    broadcast_parameters(model, ctx)
    world = World(WorldConfig(seed=config.world_seed, sketch_fraction=config.sketch_fraction))
    pool = cached_pool(
        run.pool_cache, world, backbone, "train", config.pool_size, num_workers=run.num_workers
    )
    log.info("training pool of %d samples ready after %.0f s", len(pool), time.perf_counter() - started)
    # What decides the weights, without the episode count (a finished run may be given more).
    settings = {
        "config": config.result_settings(),
        "backbone": backbone.identity.to_dict(),
        "world": vars(world.config),
    }
    if ctx.is_main:
        run.out.mkdir(parents=True, exist_ok=True)
        described = {"config": config.to_dict(), "run": {k: str(v) for k, v in vars(run).items()}}
        (run.out / CONFIG_FILE).write_text(
            json.dumps({**settings, **described, "versions": _versions()}, indent=1) + "\n"
        )
    barrier(ctx)
    shared = {f.name for f in fields(PretrainOptions)} & {f.name for f in fields(RunOptions)}
    options = PretrainOptions(
        run_dir=run.out,
        fingerprint=fingerprint(settings),
        **{name: getattr(run, name) for name in shared},  # progress, resume, log_every, tensorboard
        teacher=load_teacher(config.teacher_features, len(pool), ctx.device),
        evaluator=WorldEvaluator(world, backbone, config, config.eval_per_class, run)
        if ctx.is_main
        else None,
        step_hook=step_hook,
    )
    result = pretrain(model, pool, config, ctx, options)
    path = run.out / CHECKPOINT_FILE
    scores: dict[str, float] = {}
    if ctx.is_main:
        _round_to(backbone, SAVE_DTYPES[run.save_dtype])  # score exactly the weights we store
        scores = WorldEvaluator(world, backbone, config, config.final_eval_per_class, run).final()
        provenance = {
            "command": run.command,
            "seed": config.seed,
            "steps": config.total_steps,
            "episodes": config.episodes,
            "steps_this_call": result.steps,
            "wall_seconds_this_call": round(time.perf_counter() - started, 1),
            "world": vars(world.config),
            "versions": _versions(),
            "final_loss": result.final_loss,
        }
        save_checkpoint(
            path, backbone_checkpoint(backbone, world, config, provenance, scores, run.save_dtype)
        )
    barrier(ctx)
    return path, result, scores


class WorldEvaluator:
    """Zero-shot accuracy on held-out photos and sketches (rendered once), for the metrics log."""

    def __init__(
        self, world: World, backbone: Backbone, config: PretrainConfig, per_class: int, run: RunOptions
    ) -> None:
        count = per_class * len(world)
        self.world, self.backbone, self.templates, self.run = world, backbone, config.templates, run
        self.photo = self._pool("heldout", count, "photo")
        self.sketch = self._pool("heldout", count, "sketch")
        self.probe_count = config.probe_per_class * len(world)

    def _pool(self, split: str, count: int, style: str, start: int = 0) -> Pool:
        return cached_pool(
            self.run.pool_cache, self.world, self.backbone, split, count, style, start, self.run.num_workers
        )

    def __call__(self, model: PretrainModel) -> dict[str, float]:
        return self.scores()  # `model` shares its CLIP with self.backbone

    def scores(self) -> dict[str, float]:
        return {
            "zero_shot_heldout_photo": self._zero_shot(self.photo),
            "zero_shot_heldout_sketch": self._zero_shot(self.sketch),
        }

    def final(self) -> dict[str, float]:
        """Zero-shot (photo, sketch) and a linear probe trained on training-split photos (samples
        from index 10^7 on: not in the pretraining pool)."""
        scores = self.scores()
        probe_pool = self._pool("train", self.probe_count, "photo", start=10**7)
        train = (image_features(self.backbone, probe_pool), probe_pool.labels)
        test = (image_features(self.backbone, self.photo), self.photo.labels)
        scores["linear_probe_heldout_photo"] = linear_probe_accuracy(train, test, len(self.world))
        scores["heldout_images_per_style"] = float(len(self.photo))
        return scores

    def _zero_shot(self, pool: Pool) -> float:
        return zero_shot_accuracy(self.backbone, pool, self.world.classnames, self.templates)


def load_teacher(path: str | None, pool_size: int, device: torch.device) -> Teacher | None:
    """External teacher features, one row per pool sample: a .npy array or a .safetensors file
    holding `features`. No teacher model ships with clipserve; bring precomputed features."""
    if path is None:
        return None
    if path.endswith(".npy"):
        features = torch.from_numpy(np.load(path, allow_pickle=False)).float()
    else:
        from safetensors.torch import load_file

        features = load_file(path)["features"].float()
    if features.ndim != 2 or len(features) < pool_size:
        raise ValueError(
            f"{path}: expected [>= {pool_size}, t] teacher features, got {tuple(features.shape)}"
        )
    features = torch.nn.functional.normalize(features, dim=-1).to(device)
    return lambda rows: features[rows.to(device)]


def backbone_checkpoint(
    backbone: Backbone,
    world: World,
    config: PretrainConfig,
    provenance: dict[str, Any],
    scores: dict[str, float],
    save_dtype: str,
) -> Checkpoint:
    dtype = SAVE_DTYPES[save_dtype]
    state = backbone.model.state_dict()
    tensors = {k: v.detach().to(dtype) if v.is_floating_point() else v.detach() for k, v in state.items()}
    backbone.model.eval()
    classes = class_embedding_matrix(backbone, world.classnames, list(config.templates))
    header = CheckpointHeader(
        kind="backbone",
        method=config.method,
        backbone=BackboneIdentity(config.arch, f"pretrained:{config.method}:seed={config.seed}"),
        config={**config.to_dict(), "save_dtype": save_dtype},
        classnames=world.classnames,
        templates=list(config.templates),
        preprocessing=backbone.preprocessing.to_dict(),
        logit_scale=backbone.logit_scale,
        provenance=provenance,
        metrics=scores,
    )
    return Checkpoint(header=header, tensors=tensors, class_embeddings=classes)


@torch.no_grad()
def _round_to(backbone: Backbone, dtype: torch.dtype) -> None:
    for tensor in backbone.model.state_dict().values():
        if tensor.is_floating_point():
            tensor.copy_(tensor.to(dtype).to(tensor.dtype))


def _versions() -> dict[str, str]:
    return {"torch": torch.__version__, "python": platform.python_version(), "argv0": Path(sys.argv[0]).name}
