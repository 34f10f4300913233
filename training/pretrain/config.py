"""Pretraining settings as one dataclass, passed in explicitly.

ProtoCLIP's published settings (methods.md §6-7; RN50 on CC2.5M, 1 GPU) and what we use by
default for the small demo backbone on the procedural world, where they differ:

| setting | paper | default here | why |
|---|---|---|---|
| episode size | 200k samples, drawn with replacement | 8192 | the pool is ~50k, not 2.5M |
| k (clusters per modality) | 20,000 (~10 samples each) | episode_size // 10 | same ratio |
| k-means | faiss GPU, 20 iterations, nredo 3 | torch on the device, 20 iterations, 3 restarts | |
| target temperature | 0.01 | 0.01 | |
| projection heads | 1024->2048 (BN, ReLU)->128 | embed->256 (BN, ReLU)->64 | tiny model |
| loss weights clip/proto/external | 1 / 1 / 1 | 1 / 1 / 1 | |
| InfoNCE-only warmup | 1 episode | 1 episode | |
| LiT phase (last episode, image lr 0) | on | off (lit_episodes=0) | option |
| optimiser | AdamW wd 0.5, lr 5e-5 (bs 64) | AdamW wd 0.1, lr 1e-3 (bs 128), betas .9/.98 | |
| schedule | linear warmup 2000 steps, cosine | linear warmup 5% of steps, cosine | |
| grad clip | 10 | 10 | |
| precision | AMP | bf16 autocast on CUDA, fp32 on CPU | |
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

METHODS = ("protoclip", "infonce")


@dataclass(frozen=True)
class PretrainConfig:
    method: str = "protoclip"
    arch: str = "clipserve-demo-vit"
    init: str | None = None  # weights to start from (tag or file); None = random
    seed: int = 1
    world_seed: int = 0
    pool_size: int = 51_200  # training-split samples rendered once; episodes draw from them
    sketch_fraction: float = 0.25
    episodes: int = 40
    episode_size: int = 8192
    batch_size: int = 128  # global, over all processes
    lr: float = 1e-3
    warmup_fraction: float = 0.05
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    max_grad_norm: float | None = 10.0
    # ProtoCLIP
    k: int | None = None  # None = episode_size // 10
    kmeans_iterations: int = 20
    kmeans_restarts: int = 3
    target_temperature: float = 0.01  # <= 0: hard cluster labels
    pbt: bool = True
    proto_hidden: int = 256
    proto_dim: int = 64
    w_clip: float = 1.0
    w_proto: float = 1.0
    w_external: float = 1.0
    infonce_warmup_episodes: int = 1
    lit_episodes: int = 0  # last episodes: InfoNCE only, image tower frozen (LiT)
    teacher_features: str | None = None  # [pool_size, t] external teacher features (file)
    # evaluation
    templates: tuple[str, ...] = ("a photo of a {}.",)
    eval_per_class: int = 8  # held-out images per class and style, after every episode
    final_eval_per_class: int = 32
    probe_per_class: int = 32  # training-split photos per class for the linear probe

    @property
    def clusters(self) -> int:
        return self.k if self.k is not None else max(2, self.episode_size // 10)

    @property
    def steps_per_episode(self) -> int:
        return self.episode_size // self.batch_size

    @property
    def total_steps(self) -> int:
        return self.episodes * self.steps_per_episode

    def uses_prototypes(self, episode: int) -> bool:
        """Prototype losses run after the InfoNCE warmup and before the LiT phase."""
        return (
            self.method == "protoclip"
            and episode >= self.infonce_warmup_episodes
            and episode < self.episodes - self.lit_episodes
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def validate(config: PretrainConfig) -> PretrainConfig:
    if config.method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {config.method!r}")
    if config.episode_size < config.batch_size:
        raise ValueError(f"episode size {config.episode_size} is smaller than a batch ({config.batch_size})")
    if not 2 <= config.clusters <= config.episode_size:
        raise ValueError(f"k must be in [2, episode size], got {config.clusters}")
    if config.episodes < 1 or config.lr <= 0 or config.pool_size < 1:
        raise ValueError("episodes and pool size must be >= 1 and lr > 0")
    if config.lit_episodes + config.infonce_warmup_episodes > config.episodes:
        raise ValueError("warmup and LiT episodes exceed the number of episodes")
    return config
