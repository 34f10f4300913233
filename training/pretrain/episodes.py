"""One episode's preparation (ProtoCLIP): which pool rows it draws, and, unless it is the InfoNCE
warmup or the LiT phase, the projected features of all of them (eval mode, no gradients, each
rank encoding its share) clustered per modality into the episode's fixed prototype targets.
Rank 0 clusters and broadcasts: k-means is not bitwise reproducible across devices."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist

from training.data.batches import mixed_seed, rank_shares, rank_slice
from training.distributed import DistContext, gather_rows
from training.feeds import autocast
from training.pretrain.config import PretrainConfig
from training.pretrain.model import PretrainModel
from training.pretrain.pool import Pool
from training.pretrain.prototypes import Clusters, Prototypes, episode_prototypes

Teacher = Callable[[torch.Tensor], torch.Tensor]  # pool rows [E] -> [E, t] teacher features


@dataclass
class Episode:
    index: int
    rows: torch.Tensor  # [E] pool rows
    protos: Prototypes | None
    freeze_visual: bool


def episode_rows(config: PretrainConfig, index: int, pool_size: int) -> torch.Tensor:
    """The episode's pool rows, drawn with replacement (as ProtoCLIP draws its 200k)."""
    generator = torch.Generator().manual_seed(mixed_seed("episode", config.seed, index))
    return torch.randint(pool_size, (config.episode_size,), generator=generator)


def prepare_episode(
    model: PretrainModel,
    pool: Pool,
    config: PretrainConfig,
    ctx: DistContext,
    index: int,
    teacher: Teacher | None,
) -> Episode:
    rows = episode_rows(config, index, len(pool))
    freeze = index >= config.episodes - config.lit_episodes
    if not config.uses_prototypes(index):
        return Episode(index, rows, None, freeze)
    image, text = episode_features(model, pool, rows, config, ctx)  # [E, p] each, on every rank
    protos = None
    if ctx.is_main:
        protos = episode_prototypes(
            image,
            text,
            config.clusters,
            pbt=config.pbt,
            teacher=teacher(rows) if teacher is not None else None,
            iterations=config.kmeans_iterations,
            restarts=config.kmeans_restarts,
            seed=mixed_seed("kmeans", config.seed, index) % (2**31),
        )
    return Episode(index, rows, _broadcast(protos, image, text, config, ctx), freeze)


@torch.no_grad()
def episode_features(
    model: PretrainModel, pool: Pool, rows: torch.Tensor, config: PretrainConfig, ctx: DistContext
) -> tuple[torch.Tensor, torch.Tensor]:
    """Projected features of the whole episode (eval mode), each rank encoding its share."""
    model.eval()
    image_parts, text_parts = [], []
    for batch in episode_chunks(rows, config.batch_size, ctx.world_size):
        shares = rank_shares(len(batch), ctx.world_size)
        mine = torch.tensor(rank_slice(batch.tolist(), ctx.rank, ctx.world_size), dtype=torch.long)
        with autocast(ctx.device):
            features = model(pool.images(mine, ctx.device), *pool.texts(mine, ctx.device))
        assert features.image_proj is not None and features.text_proj is not None
        image_parts.append(gather_rows(features.image_proj.float(), shares, ctx))
        text_parts.append(gather_rows(features.text_proj.float(), shares, ctx))
    model.train()
    return torch.cat(image_parts), torch.cat(text_parts)


def episode_chunks(rows: torch.Tensor, size: int, world_size: int) -> list[torch.Tensor]:
    """`rows` in chunks of `size`; a last chunk too small to give every rank a row joins the one
    before it (config validation and check_batch_split make `size` >= world_size)."""
    chunks = list(rows.split(size))
    if len(chunks) > 1 and len(chunks[-1]) < world_size:
        chunks[-2:] = [torch.cat(chunks[-2:])]
    return chunks


def _broadcast(
    protos: Prototypes | None,
    image: torch.Tensor,
    text: torch.Tensor,
    config: PretrainConfig,
    ctx: DistContext,
) -> Prototypes:
    """Rank 0's prototypes on every rank (k-means is not bitwise reproducible across devices)."""
    if not ctx.distributed:
        assert protos is not None
        return protos
    k, p = config.clusters, image.shape[1]
    names = (
        "image_labels",
        "text_labels",
        "image_centroids",
        "text_centroids",
        "image_protos",
        "text_protos",
    )
    shapes = [(len(image),), (len(text),), (k, p), (k, p), (k, p), (k, p)]
    if protos is not None:
        tensors = [
            protos.image_clusters.labels,
            protos.text_clusters.labels,
            protos.image_clusters.centroids,
            protos.text_clusters.centroids,
            protos.image_protos_of_text,
            protos.text_protos_of_image,
        ]
    else:
        tensors = [
            torch.empty(shape, dtype=torch.long if "labels" in name else torch.float32, device=ctx.device)
            for name, shape in zip(names, shapes, strict=True)
        ]
    for tensor in tensors:
        dist.broadcast(tensor, src=0)
    return Prototypes(
        Clusters(tensors[0], tensors[2], 0.0), Clusters(tensors[1], tensors[3], 0.0), tensors[4], tensors[5]
    )
