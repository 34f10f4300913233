"""SHIP (Wang et al., ICCV'23): synthesise image features for label-only classes with a VAE whose
decoder is "generator -> prompt -> frozen CLIP text tower", then fine-tune CoOp on real + synthetic.

Label space: `classnames` holds every class, those with images and the label-only ones named in
`config.label_only_classes` (they get no images; their features are synthesised).

Stage "generator" (the VAE; trainable: encoder, generator, prompt ctx):
  v = stock normalised image feature [D]; mu, logvar = E(v) with E = Linear(D -> H)+ReLU and two
  Linear(H -> latent) heads; z = mu + exp(logvar / 2) * eps; b = G(z) with
  G = Linear(latent -> H')+ReLU+Linear(H' -> W); v_hat = norm(text([SOS][p_1+b .. p_n+b][class_y][.]))
  loss = mean over batch of sum over dims (v_hat - v)^2 + kl_weight * KL(N(mu, sigma^2) || N(0, I)).
Stage "classifier" (trainable: the CoOp context only, init "a photo of a"):
  each batch's real features plus `synthetic_per_batch` features synthesised for label-only
  classes drawn uniformly (z ~ N(0, I), no encoder), cross-entropy over all classes.
The loop runs both stages in order (see base.py); the served artefact is the stage-B CoOp
(`serving_learner()`), so class embeddings are cacheable and the image side is stock CLIP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from models.backbone import Backbone
from models.prompts.base import Batch, LearnerConfig, PromptLearner
from models.prompts.class_prompts import ClassPrompts, context_from_words, learned_context_length
from models.prompts.coop import CoOp, CoOpConfig
from models.text import encode_token_embeddings

GENERATOR_STAGE, CLASSIFIER_STAGE = "generator", "classifier"


@dataclass
class SHIPConfig(LearnerConfig):
    n_ctx: int = 4  # the VAE prompt's context (random init, as in the reference)
    ctx_init: str | None = None
    label_only_classes: list[str] = field(default_factory=list)
    latent_dim: int | None = None  # default: the image embedding dim
    encoder_hidden: int = 2048  # the reference's ImageNet variant uses 4096
    generator_hidden: int = 4096
    kl_weight: float = 1.0
    init_std: float = 0.02
    classifier_n_ctx: int = 4
    classifier_ctx_init: str | None = "a photo of a"
    synthetic_per_batch: int | None = None  # default: as many as the batch's real features


class VAEEncoder(nn.Module):
    def __init__(self, dim: int, hidden: int, latent: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(inplace=True))
        self.mean = nn.Linear(hidden, latent)
        self.log_var = nn.Linear(hidden, latent)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.net(features)  # [B, H]
        return self.mean(hidden), self.log_var(hidden)  # [B, latent] each


class SHIP(PromptLearner):
    method = "ship"
    config_class = SHIPConfig
    config: SHIPConfig
    training_stages = (GENERATOR_STAGE, CLASSIFIER_STAGE)
    _label_only: torch.Tensor  # [K] indices of the label-only classes (a non-persistent buffer)

    def __init__(self, backbone: Backbone, classnames: Sequence[str], config: LearnerConfig | None = None):
        super().__init__(backbone, classnames, config)
        cfg = self.config
        unknown = sorted(set(cfg.label_only_classes) - set(self.classnames))
        if unknown:
            raise ValueError(f"label_only_classes must be among the class names; unknown: {unknown}")
        self.n_ctx = learned_context_length(backbone, cfg.n_ctx, cfg.ctx_init)
        width, dim = backbone.text_width, backbone.embed_dim
        latent = cfg.latent_dim or dim
        self.ctx = nn.Parameter(self._initial_context(width))
        self.encoder = VAEEncoder(dim, cfg.encoder_hidden, latent)
        hidden = cfg.generator_hidden
        layers = [nn.Linear(latent, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, width)]
        self.generator = nn.Sequential(*layers)
        self._init_vae_weights()
        classifier_config = CoOpConfig(
            n_ctx=cfg.classifier_n_ctx, ctx_init=cfg.classifier_ctx_init, text_chunk=cfg.text_chunk
        )
        self.classifier = CoOp(backbone, self.classnames, classifier_config)
        self._prompts = ClassPrompts(backbone, self.classnames, self.n_ctx, cfg.ctx_init)
        label_only = [self.classnames.index(name) for name in cfg.label_only_classes]
        self.register_buffer("_label_only", torch.tensor(label_only, dtype=torch.long), persistent=False)
        self.set_stage(self.training_stages[0])

    def _initial_context(self, width: int) -> torch.Tensor:
        cfg = self.config
        if cfg.ctx_init:
            return context_from_words(self.backbone, cfg.ctx_init, self.n_ctx).cpu()
        return torch.randn(self.n_ctx, width) * cfg.init_std

    def _init_vae_weights(self) -> None:
        # The reference initialises E and G with N(0, 0.02) weights and zero biases.
        for module in [*self.encoder.modules(), *self.generator.modules()]:
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=self.config.init_std)
                nn.init.zeros_(module.bias)

    # -- stages --------------------------------------------------------------------------------

    def set_stage(self, stage: str) -> None:
        super().set_stage(stage)
        vae = stage == GENERATOR_STAGE
        for module in (self.encoder, self.generator):
            module.requires_grad_(vae)
        self.ctx.requires_grad_(vae)
        self.classifier.requires_grad_(not vae)

    def serving_learner(self) -> PromptLearner:
        return self.classifier

    # -- the interface -------------------------------------------------------------------------

    def class_embeddings(self, classnames: Sequence[str]) -> torch.Tensor:
        return self.classifier.class_embeddings(classnames)

    def loss(self, batch: Batch) -> torch.Tensor:
        features = self._batch_image_features(batch)  # [B, D]
        labels = batch.labels.to(features.device)
        if self.stage == GENERATOR_STAGE:
            return self.vae_loss(features, labels)
        return self.classifier_loss(features, labels)

    def vae_loss(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Reconstruct each real feature through its own class's prompt: squared error + KL."""
        mean, log_var = self.encoder(features)  # [B, latent] each
        z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
        reconstructed = self._decode(z, self._prompts.select(labels))  # [B, D]
        reconstruction = (reconstructed - features).pow(2).sum(dim=1).mean()
        kl = -0.5 * (1 + log_var - mean.pow(2) - log_var.exp()).sum(dim=1).mean()
        return reconstruction + self.config.kl_weight * kl

    def classifier_loss(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """CoOp's cross-entropy over all classes, on real plus synthesised label-only features."""
        if len(self._label_only):
            count = self.config.synthetic_per_batch or features.shape[0]
            picks = torch.randint(len(self._label_only), (count,), device=self._label_only.device)
            synthetic_labels = self._label_only[picks]  # [S]
            with torch.no_grad():
                synthetic = self._sample(self._prompts.select(synthetic_labels))  # [S, D]
            features = torch.cat([features, synthetic.to(features.device)])
            labels = torch.cat([labels, synthetic_labels.to(labels.device)])
        logits = self.scores(features, self.classifier.class_embeddings(self.classnames))
        return F.cross_entropy(logits, labels)

    # -- synthesis -----------------------------------------------------------------------------

    @torch.no_grad()
    def synthesize(self, classnames: Sequence[str], n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n features per class for any class names (no images needed): ([C * n, D] normalised,
        [C * n] indices into `classnames`), z ~ N(0, I) through the generator."""
        labels = torch.arange(len(classnames)).repeat_interleave(n)  # [C * n]
        prompts = ClassPrompts(self.backbone, classnames, self.n_ctx, self.config.ctx_init)
        return self._sample(prompts.select(labels)), labels

    def _sample(self, prompts: ClassPrompts) -> torch.Tensor:
        latent = self.encoder.mean.out_features
        z = torch.randn(len(prompts), latent, device=self.ctx.device)
        return self._decode(z, prompts)

    def _decode(self, z: torch.Tensor, prompts: ClassPrompts) -> torch.Tensor:
        """z [N, latent], one prompt row per sample -> [N, D] normalised synthetic features."""
        bias = self.generator(z)  # [N, W]
        ctx = self.ctx.unsqueeze(0) + bias.unsqueeze(1)  # [N, n_ctx, W]
        part = prompts.trimmed()
        features = encode_token_embeddings(self.backbone, part.assemble(ctx), part.eot_index)
        return F.normalize(features, dim=-1)
