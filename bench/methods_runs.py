"""Training and scoring for `make bench-methods`, through the library the CLI uses: run_training
(training/pipeline.py) for every prompt method, evaluate / run_protocol (training/evaluate.py,
training/protocols.py) for every score. Zero-shot is a learner whose class embeddings are the
template matrix; the linear probe is fitted on the same K-shot draw as the prompt methods."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.methods_settings import METHOD_SETTINGS, Scale, method_hparams
from models.backbone import Backbone
from models.prompts import PromptLearner
from models.zeroshot import class_embedding_matrix
from training.data import LabeledImages
from training.data.fewshot import Subset, base_new_split
from training.distributed import DistContext
from training.evaluate import SetResult, evaluate
from training.feeds import cached_features
from training.learners import load_learner
from training.pipeline import TrainRequest, prepare_data, run_training
from training.pretrain.evaluate import LinearProbe

log = logging.getLogger(__name__)


class ZeroShot(PromptLearner):
    """Hand-written templates as a learner with nothing to learn: class embeddings are the mean of
    the normalised template embeddings (models/zeroshot.py)."""

    method = "zeroshot"

    def __init__(self, backbone: Backbone, classnames: Sequence[str], templates: Sequence[str]):
        super().__init__(backbone, classnames)
        self.templates = list(templates)

    @torch.no_grad()
    def class_embeddings(self, classnames: Sequence[str]) -> torch.Tensor:
        return class_embedding_matrix(self.backbone, list(classnames), self.templates)


@dataclass
class Runner:
    backbone: Backbone
    pretrained: str  # the backbone's weights file (recorded in every run's settings)
    work: Path
    scale: Scale
    ctx: DistContext
    resume: bool = False  # --reuse: a finished run with the same settings is not retrained
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per training job key

    def train(
        self,
        key: str,
        data: LabeledImages,
        shots: int,
        subset: Subset = "all",
        label_only: Sequence[str] = (),
        tag: str = "",
    ) -> list[PromptLearner]:
        """One learner per seed of METHOD_SETTINGS[key] on `shots` images per class of `data`."""
        learners, started = [], time.perf_counter()
        for seed in self.scale.seeds:
            request = self.request(key, data, shots, subset, seed, tag)
            request.label_only_classes = list(label_only)
            path, _ = run_training(request, self.ctx, backbone=self.backbone)
            learners.append(load_learner(path, self.backbone))
        name = f"{key}{tag} {subset} K={shots}"
        self.seconds[name] = time.perf_counter() - started
        log.info("%s: %.0f s for %d seeds", name, self.seconds[name], len(learners))
        return learners

    def request(
        self, key: str, data: LabeledImages, shots: int, subset: Subset, seed: int, tag: str
    ) -> TrainRequest:
        setting = METHOD_SETTINGS[key]
        return TrainRequest(
            data=data.source,
            out=str(self.work / "runs" / f"{key}{tag}-{subset}-K{shots}" / f"seed_{seed}"),
            method=setting["method"],
            shots=shots,
            subset=subset,
            seed=seed,
            arch=self.backbone.identity.arch,
            pretrained=self.pretrained,
            learner=dict(setting["learner"]),
            hparams=method_hparams(key, self.scale, shots, subset_classes(data, subset)),
            num_workers=0,
            progress=False,
            resume=self.resume,
        )

    def probes(self, data: LabeledImages, shots: int, subset: Subset = "all") -> list[LinearProbe]:
        """One linear probe per seed, on the same K-shot draw the prompt methods get."""
        probes = []
        for seed in self.scale.seeds:
            sampled = prepare_data(self.request("coop", data, shots, subset, seed, "")).train
            features, labels = self.features(sampled)
            probes.append(LinearProbe(features, labels, len(sampled.keys)))
        return probes

    def features(self, data: LabeledImages) -> tuple[torch.Tensor, torch.Tensor]:
        """[N, D] stock image features and [N] labels of a set."""
        learner = ZeroShot(self.backbone, data.classnames, ["{}"])
        features, valid, _ = cached_features(learner, data, self.ctx.device)
        labels = torch.tensor([r.label for r in data.records])
        return features[valid], labels[valid]


def subset_classes(data: LabeledImages, subset: str) -> int:
    """How many classes a run on `subset` of `data` trains on."""
    base, new = base_new_split(len(data.keys))
    return {"all": len(data.keys), "base": len(base), "new": len(new)}[subset]


def score_probe(runner: Runner, probes: Sequence[LinearProbe], data: LabeledImages) -> list[SetResult]:
    features, labels = runner.features(data)
    return [SetResult(data.name, data.classnames, labels, probe.predict(features)) for probe in probes]


def score(learners: Sequence[PromptLearner], data: LabeledImages) -> list[float]:
    """Accuracy (%) of every learner on `data`, among the set's own classes."""
    return [evaluate(learner, data, batch_size=256).accuracy for learner in learners]


def summary(values: Sequence[float]) -> dict[str, Any]:
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
    return {"mean": mean, "std": std, "values": list(values)}
