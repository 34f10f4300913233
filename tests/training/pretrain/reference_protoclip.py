"""ProtoCLIP's objective (Chen et al., TNNLS'23) restated plainly, sample by sample.

Features: CLIP's normalised image and text embeddings, and their projections through a head
(Linear -> BatchNorm over the batch -> ReLU -> Linear, applied to the UNnormalised embedding),
normalised. The objective on a batch:
  L_clip = (1/2) [mean_i -log softmax_j(s g_i . h_j)[i] + mean_i -log softmax_j(s h_i . g_j)[i]]
  PBT: the image-space prototype of text cluster m is the mean image projection over the
       episode samples the TEXT k-means put in m (zeros when m is empty); vice versa for text.
  L_i->t: logits_i,m = s_p * u_i . P_img_m; target_i = softmax_m(c_y . c_m / tau), with c the
       text centroids and y sample i's text cluster (the teacher side); CE with that target.
  L_t->i: symmetric (text projections, text-space prototypes of the image clusters, image
       centroids and the image cluster of the sample).
  L_ext: the same against an external teacher's clusters, hard labels, PBT into both spaces.
  L = w_clip L_clip + w_proto (L_i->t + L_t->i) / 2 + w_ext (L_i->ext + L_t->ext) / 2.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from open_clip.tokenizer import SimpleTokenizer

from tests.models.reference_clip import image_feature, linear, normalised, text_feature

EOT = SimpleTokenizer().encoder["<end_of_text>"]


def head(projection: torch.nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """[B, d] -> [B, p] normalised, BatchNorm with the batch's own (biased) statistics."""
    first, norm, _, last = projection
    h = linear(x, first)
    mean = h.mean(dim=0)
    variance = ((h - mean) ** 2).mean(dim=0)
    h = (h - mean) / torch.sqrt(variance + norm.eps) * norm.weight + norm.bias
    return normalised(linear(torch.clamp(h, min=0), last))


def features(
    model: torch.nn.Module, pixels: torch.Tensor, tokens: torch.Tensor, eot: torch.Tensor
) -> dict[str, torch.Tensor]:
    """CLIP embeddings and head projections, sample by sample through the plain towers."""
    clip = model.clip
    vectors = clip.token_embedding.weight
    length = clip.positional_embedding.shape[0]
    images, texts = [], []
    for image, ids, end in zip(pixels, tokens, eot, strict=True):
        images.append(image_feature(clip, image)[0])
        row = [vectors[int(i)] for i in ids] + [vectors[0]] * (length - len(ids))  # padded to L
        texts.append(text_feature(clip, row, int(end)))
    image, text = torch.stack(images), torch.stack(texts)  # unnormalised [B, D]
    return {
        "image": normalised(image),
        "text": normalised(text),
        "image_proj": head(model.image_head, image),
        "text_proj": head(model.text_head, text),
    }


def back_translated(labels: Sequence[int], student: torch.Tensor, k: int) -> torch.Tensor:
    """[k, p]: mean student feature over the samples in each teacher cluster."""
    rows = []
    for cluster in range(k):
        members = [student[i] for i, label in enumerate(labels) if label == cluster]
        rows.append(torch.stack(members).mean(dim=0) if members else torch.zeros(student.shape[1]))
    return torch.stack(rows)


def soft_target(centroids: torch.Tensor, label: int, tau: float) -> torch.Tensor:
    scores = torch.stack([(centroids[label] * c).sum() / tau for c in centroids])
    weights = torch.exp(scores - scores.max())  # the same softmax, without overflow at small tau
    return weights / weights.sum()


def proto_term(
    student: torch.Tensor,
    prototypes: torch.Tensor,
    centroids: torch.Tensor,
    labels: Sequence[int],
    scale: torch.Tensor,
    tau: float,
) -> torch.Tensor:
    """Mean over samples of CE(scale * u_i . P, target_i); hard targets when tau <= 0."""
    losses = []
    for u, label in zip(student, labels, strict=True):
        logits = torch.stack([scale * (u * p).sum() for p in prototypes])
        log_probs = logits - torch.logsumexp(logits, dim=0)
        if tau > 0:
            losses.append(-(soft_target(centroids, label, tau) * log_probs).sum())
        else:
            losses.append(-log_probs[label])
    return torch.stack(losses).mean()


def clip_term(image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    def one_way(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        losses = []
        for i in range(len(a)):
            logits = torch.stack([scale * (a[i] * b[j]).sum() for j in range(len(b))])
            losses.append(torch.logsumexp(logits, dim=0) - logits[i])
        return torch.stack(losses).mean()

    return (one_way(image, text) + one_way(text, image)) / 2


def objective(
    f: dict[str, torch.Tensor],
    episode: tuple[torch.Tensor, torch.Tensor],
    clusters: dict[str, tuple[list[int], torch.Tensor]],
    positions: Sequence[int],
    scales: tuple[torch.Tensor, torch.Tensor],
    weights: tuple[float, float, float],
    tau: float,
) -> dict[str, torch.Tensor]:
    """The parts and the total. episode: the (image, text) projections that were clustered;
    clusters: {"image"|"text"|"external": (labels over the episode, centroids)}; positions: each
    batch row's place in the episode."""
    scale, proto_scale = scales
    episode_image, episode_text = episode
    k = clusters["image"][1].shape[0]
    text_labels, text_centroids = clusters["text"]
    image_labels, image_centroids = clusters["image"]
    image_protos = back_translated(text_labels, episode_image, k)  # image space, text clusters
    text_protos = back_translated(image_labels, episode_text, k)  # text space, image clusters
    i2t = proto_term(
        f["image_proj"], image_protos, text_centroids, [text_labels[p] for p in positions], proto_scale, tau
    )
    t2i = proto_term(
        f["text_proj"], text_protos, image_centroids, [image_labels[p] for p in positions], proto_scale, tau
    )
    parts = {"clip": clip_term(f["image"], f["text"], scale), "proto": (i2t + t2i) / 2}
    parts["external"] = torch.zeros(())
    if "external" in clusters:
        labels, centroids = clusters["external"]
        batch_labels = [labels[p] for p in positions]
        i2e = proto_term(
            f["image_proj"],
            back_translated(labels, episode_image, k),
            centroids,
            batch_labels,
            proto_scale,
            -1,
        )
        t2e = proto_term(
            f["text_proj"], back_translated(labels, episode_text, k), centroids, batch_labels, proto_scale, -1
        )
        parts["external"] = (i2e + t2e) / 2
    w_clip, w_proto, w_external = weights
    parts["total"] = w_clip * parts["clip"] + w_proto * parts["proto"] + w_external * parts["external"]
    return parts
