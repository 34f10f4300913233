"""One pretraining step: the objective on one global batch, the optimiser and its schedule, and
the gather that makes several processes compute exactly one process's loss.

Multi-process (torchrun): each rank encodes its contiguous share of the global batch (shares may
differ by one row when the batch does not divide evenly); InfoNCE needs every pair, so features
are all-gathered, and each rank sums the loss terms of ITS rows only (its images against all
texts, its texts against all images, its prototype terms), divided by the global batch size. The
gather's backward sums gradients over ranks, so after the one all-reduce of
training/distributed.py the update equals one process's step on the whole global batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from training import optim
from training.distributed import DistContext, gather_rows
from training.optim import OptimizerSpec, Schedule
from training.pretrain.config import PretrainConfig
from training.pretrain.losses import proto_loss, soft_targets
from training.pretrain.model import PretrainModel
from training.pretrain.prototypes import Prototypes

# Exempt from weight decay, as ProtoCLIP's reference code: tensors of fewer than two dimensions
# (gains, biases, the class embedding), norm layers, temperatures, and the projection heads whole.
# Positional and token embeddings are decayed.
NO_DECAY_MARKERS = ("bias", "ln_", "bn", "logit_scale", "image_head.", "text_head.")


@dataclass
class StepBatch:
    pixels: torch.Tensor  # [b, 3, H, W] this rank's rows
    tokens: torch.Tensor  # [b, L]
    eot: torch.Tensor  # [b]
    positions: torch.Tensor  # [b] the rows' positions in the episode (cluster label lookup)
    global_size: int  # B, rows over all ranks
    offset: int  # where this rank's rows start in the global batch
    shares: tuple[int, ...] = ()  # rows of each rank (training.data.batches.rank_shares); () = one process


def check_batch_split(config: PretrainConfig, world_size: int) -> None:
    """Every process needs rows of every global batch: one for InfoNCE, two for ProtoCLIP, whose
    projection heads hold BatchNorm (training-mode BatchNorm cannot normalise one row)."""
    needed = 2 if config.method == "protoclip" else 1
    smallest = config.batch_size // world_size
    if smallest < needed:
        raise ValueError(
            f"a global batch of {config.batch_size} over {world_size} processes leaves a process "
            f"{smallest} row(s) per step; {config.method} needs {needed} per process: use "
            f"--batch-size {needed * world_size} or more"
        )


def objective(
    model: PretrainModel,
    batch: StepBatch,
    protos: Prototypes | None,
    config: PretrainConfig,
    ctx: DistContext,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """This rank's share of the loss (the shares sum to the global-batch loss) and its parts."""
    features = model(batch.pixels, batch.tokens, batch.eot)
    shares = batch.shares or (len(batch.pixels),)
    image, text = gather_rows(features.image, shares, ctx), gather_rows(features.text, shares, ctx)  # [B, D]
    scale, proto_scale = model.scales()
    rows = slice(batch.offset, batch.offset + len(batch.pixels))
    logits = scale * image[rows] @ text.T  # [b, B]
    targets = torch.arange(batch.offset, rows.stop, device=image.device)
    per_row = F.cross_entropy(logits, targets, reduction="sum") + F.cross_entropy(
        scale * text[rows] @ image.T, targets, reduction="sum"
    )
    parts = {"clip": per_row / (2 * batch.global_size)}
    total = config.w_clip * parts["clip"]
    if protos is not None and proto_scale is not None:
        assert features.image_proj is not None and features.text_proj is not None
        share = len(batch.pixels) / batch.global_size  # proto terms are per row: mean * share
        parts.update(
            _proto_terms(features.image_proj, features.text_proj, batch, protos, proto_scale, config)
        )
        total = total + share * (config.w_proto * parts["proto"] + config.w_external * parts["external"])
    return total, parts


def _proto_terms(
    image: torch.Tensor,
    text: torch.Tensor,
    batch: StepBatch,
    protos: Prototypes,
    scale: torch.Tensor,
    config: PretrainConfig,
) -> dict[str, torch.Tensor]:
    text_labels = protos.text_clusters.labels[batch.positions]
    image_labels = protos.image_clusters.labels[batch.positions]
    tau = config.target_temperature
    i2t = proto_loss(
        image, protos.image_protos_of_text, protos.text_clusters.centroids, text_labels, scale, tau
    )
    t2i = proto_loss(
        text, protos.text_protos_of_image, protos.image_clusters.centroids, image_labels, scale, tau
    )
    terms = {"proto": (i2t + t2i) / 2, "external": torch.zeros((), device=image.device)}
    external = protos.external_clusters
    if external is not None:
        assert protos.image_protos_of_external is not None and protos.text_protos_of_external is not None
        labels = external.labels[batch.positions]
        i2e = proto_loss(image, protos.image_protos_of_external, external.centroids, labels, scale, -1)
        t2e = proto_loss(text, protos.text_protos_of_external, external.centroids, labels, scale, -1)
        terms["external"] = (i2e + t2e) / 2
    return terms


def param_groups(model: nn.Module, config: PretrainConfig, visual: set[int]) -> list[dict]:
    """Four groups (ProtoCLIP): image tower / rest, each split into decayed weights and the
    undecayed rest (NO_DECAY_MARKERS)."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            decay = param.ndim >= 2 and not any(marker in name for marker in NO_DECAY_MARKERS)
            groups.setdefault((id(param) in visual, decay), []).append(param)
    return [
        {"params": params, "weight_decay": config.weight_decay if decay else 0.0, "visual": is_visual}
        for (is_visual, decay), params in sorted(groups.items())
    ]


def build_optimizer(model: nn.Module, config: PretrainConfig, visual: set[int]) -> torch.optim.Optimizer:
    """AdamW over `param_groups`, through the training package's one optimiser builder."""
    spec = OptimizerSpec("adamw", config.lr, config.weight_decay, betas=config.betas, eps=config.eps)
    return optim.build_optimizer(param_groups(model, config, visual), spec)


def schedule(config: PretrainConfig) -> Schedule:
    """Linear warmup over warmup_fraction of all steps (at least one), then cosine to zero, per step."""
    total = config.total_steps
    return Schedule(config.lr, total, warmup=max(1, round(config.warmup_fraction * total)))


def learning_rate(config: PretrainConfig, step: int) -> float:
    return schedule(config).at(step)


__all__ = ["StepBatch", "build_optimizer", "check_batch_split", "learning_rate", "objective", "soft_targets"]
