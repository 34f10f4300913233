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
| weight decay on | all but gains, biases, norms, temperatures, heads | the same | |
| training augmentation | RRC .5-1, flip, jitter/grayscale/blur p=.2 | none | see docs/PRETRAINING.md |
| precision | AMP | bf16 autocast on CUDA, fp32 on CPU | |
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal, get_args

from training.options import option

Method = Literal["protoclip", "infonce"]
SaveDtype = Literal["fp32", "fp16", "bf16"]
METHODS: tuple[str, ...] = get_args(Method)
PRETRAIN_GROUP = "pretraining (defaults: training/pretrain/config.py)"


@dataclass(frozen=True)
class PretrainConfig:
    """Everything that defines a pretraining run's result; each field is a `clipserve pretrain`
    option (training/options.py)."""

    method: Method = option(
        "objective: protoclip (InfoNCE + prototype losses) or infonce (plain CLIP)", "protoclip"
    )
    arch: str = option("open_clip architecture (the demo's: clipserve-demo-vit)", "clipserve-demo-vit")
    init: str | None = option("start from these weights (open_clip tag or local file); default: random", None)
    seed: int = option("initialisation and episode draws", 1)
    world_seed: int = option("the world's seed (which scenes exist)", 0)
    pool_size: int = option(
        "training-split samples rendered once; episodes draw from them with replacement", 51_200
    )
    sketch_fraction: float = option("share of sketch-style samples in the pool", 0.25)
    episodes: int = option(
        "episodes to train (the unit of resume and of prototype rebuilding); a finished run given "
        "more episodes continues from its state",
        40,
    )
    episode_size: int = option("samples per episode (steps per episode = episode_size // batch_size)", 8192)
    batch_size: int = option("GLOBAL batch size; need not divide by the number of processes", 128)
    lr: float = option("peak learning rate (AdamW)", 1e-3)
    warmup_fraction: float = option("share of all steps in the linear warmup, then cosine to zero", 0.05)
    weight_decay: float = option(
        "AdamW weight decay of weight matrices (not gains, biases, temperatures)", 0.1
    )
    betas: tuple[float, float] = option("AdamW betas", (0.9, 0.98), metavar=("BETA1", "BETA2"))
    eps: float = option("AdamW epsilon", 1e-6)
    max_grad_norm: float | None = option("clip the global gradient norm to this", 10.0)
    # ProtoCLIP
    k: int | None = option("clusters per modality; default episode_size // 10, the paper's ratio", None)
    kmeans_iterations: int = option("Lloyd iterations per k-means run", 20)
    kmeans_restarts: int = option("k-means runs per modality, the lowest inertia kept", 3)
    target_temperature: float = option(
        "temperature of the soft prototype targets; <= 0 for hard labels", 0.01
    )
    pbt: bool = option("Prototypical Back Translation (--no-pbt: the other modality's raw centroids)", True)
    proto_hidden: int = option("hidden width of the projection heads", 256)
    proto_dim: int = option("output width of the projection heads (the prototype space)", 64)
    w_clip: float = option("weight of the InfoNCE loss", 1.0)
    w_proto: float = option("weight of the prototype loss", 1.0)
    w_external: float = option("weight of the external-teacher prototype loss", 1.0)
    infonce_warmup_episodes: int = option("first episodes with InfoNCE only", 1)
    lit_episodes: int = option("last episodes with InfoNCE only and the image tower frozen (LiT)", 0)
    teacher_features: str | None = option(
        "external teacher: .npy or .safetensors ('features') with one row per pool sample", None
    )
    # evaluation
    templates: tuple[str, ...] = option("zero-shot templates, each with '{}'", ("a photo of a {}.",))
    eval_per_class: int = option("held-out images per class and style scored after every episode", 8)
    final_eval_per_class: int = option("held-out images per class and style in the final scores", 32)
    probe_per_class: int = option("training-split photos per class for the linear probe", 32)

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

    def result_settings(self) -> dict[str, Any]:
        """What decides the weights, without the episode count: a finished run may grow."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "episodes"}


@dataclass
class RunOptions:
    """How a pretraining run is carried out (not what it computes); `clipserve pretrain` options."""

    out: Path = option("run directory", group="run", type=Path)
    device: Literal["cuda", "cpu"] | None = option("default: cuda when available", None, group="run")
    threads: int | None = option("torch CPU threads (default: torch's choice)", None, group="run")
    num_workers: int = option("rendering processes", 0, group="run")
    pool_cache: Path | None = option(
        "folder keeping rendered pools between runs", None, group="run", type=Path
    )
    save_dtype: SaveDtype = option("dtype of the stored weights", "fp32", group="run")
    resume: bool = option(
        "continue an interrupted run, or a finished one given more --episodes; --no-resume starts over",
        True,
        group="run",
    )
    progress: bool = option("progress bar, one line per finished episode", True, group="run")
    log_every: int = option("steps between metrics.jsonl step records", 20, group="run")
    tensorboard: str | None = option(
        "also write TensorBoard logs (loss and its parts, lr, zero-shot accuracy, step time) here; "
        "needs the tensorboard package",
        None,
        group="run",
        metavar="DIR",
    )
    command: str = option("the command line, recorded in the checkpoint", "", cli=False)


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
