"""The supervised proxy used to pick the demo ViT (docs/PRETRAINING.md): the image tower of a
candidate architecture plus a linear head, trained for a fixed wall-clock budget on 64-way
classification of 12,800 rendered training-split images (AdamW 1e-3, wd 0.1, batch 128, one
thread), scored on 640 held-out photos every minute. Cheap signal of how fast a tower learns here.

    python bench/vit_proxy.py p4-w64-l4 300
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

from models.backbone import build_backbone
from training.pretrain.pool import Pool, cached_pool
from training.world import World, WorldConfig

TEXT = {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 3}
# name -> (patch, width, layers, pool); all at 32 px, head width 32.
CANDIDATES = {
    "p4-w128-l4-avg": (4, 128, 4, "avg"),
    "p8-w128-l4": (8, 128, 4, "tok"),
    "p8-w128-l6": (8, 128, 6, "tok"),
    "p4-w64-l4": (4, 64, 4, "tok"),  # the pick: clipserve-demo-vit
}


def register(name: str, folder: Path) -> str:
    patch, width, layers, pool = CANDIDATES[name]
    vision = {"image_size": 32, "layers": layers, "width": width, "head_width": 32, "patch_size": patch}
    config = {"embed_dim": 128, "vision_cfg": {**vision, "pool_type": pool}, "text_cfg": TEXT}
    (folder / f"proxy-{name}.json").write_text(json.dumps(config))
    open_clip.add_model_config(folder)
    return f"proxy-{name}"


def accuracy(visual: torch.nn.Module, head: torch.nn.Module, test: Pool) -> float:
    visual.eval()
    with torch.no_grad():
        features = F.normalize(visual(test.images(torch.arange(len(test)), torch.device("cpu"))), dim=-1)
        predictions = head(features * 10).argmax(dim=1)
    visual.train()
    return 100 * float((predictions == test.labels).float().mean())


def main(name: str, budget: float) -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        backbone = build_backbone(register(name, Path(folder)), None, seed=1)
    world, cache = World(WorldConfig(seed=0)), Path("runs/pool-cache")
    train = cached_pool(cache, world, backbone, "train", 12800)
    test = cached_pool(cache, world, backbone, "heldout", 640, "photo")
    visual, head = backbone.model.visual.requires_grad_(True).train(), torch.nn.Linear(128, 64)
    optimizer = torch.optim.AdamW([*visual.parameters(), *head.parameters()], lr=1e-3, weight_decay=0.1)
    generator = torch.Generator().manual_seed(0)
    started, step, next_report = time.perf_counter(), 0, 60.0
    while (elapsed := time.perf_counter() - started) < budget:
        if elapsed > next_report:
            print(json.dumps({"seconds": next_report, "steps": step, "acc": accuracy(visual, head, test)}))
            next_report += 60
        rows = torch.randint(0, len(train), (128,), generator=generator)
        logits = head(F.normalize(visual(train.images(rows, torch.device("cpu"))), dim=-1) * 10)
        loss = F.cross_entropy(logits, train.labels[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
    print(json.dumps({"arch": name, "steps": step, "acc": accuracy(visual, head, test)}))


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
