"""Class embeddings, end to end: a checkpoint's own classes use its stored embeddings as they are;
other labels are encoded once per (version, templates, label) and then served from a bounded
LRU, with hits and misses counted."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import torch
from prometheus_client.parser import text_string_to_metric_families

from models.backbone import Backbone
from models.checkpoint import load_checkpoint, save_checkpoint
from service.catalog.text_cache import TextCache
from service.metrics import Metrics
from tests.service.conftest import (
    CLASSES,
    admin_headers,
    assert_matches,
    image_bytes,
    make_learner,
    multipart,
    offline_scores,
    running,
    server_settings,
    write_checkpoint,
)


def counters(url: str) -> dict[str, float]:
    wanted = {
        "clipserve_text_cache_hits_total",
        "clipserve_text_cache_misses_total",
        "clipserve_text_cache_entries",
    }
    text = httpx.get(url + "/metrics").text
    return {
        sample.name.replace("clipserve_text_cache_", ""): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in wanted
    }


def test_new_labels_are_encoded_once_per_version_and_templates_then_cached(
    tmp_path: Path, tiny_backbone: Backbone
) -> None:
    first, second = make_learner(tiny_backbone, seed=1), make_learner(tiny_backbone, seed=2)
    write_checkpoint(tmp_path / "pets.safetensors", first)
    write_checkpoint(tmp_path / "versions/pets-2.safetensors", second)
    blob = image_bytes(3)
    new = ["zebra", "cat", "lion"]  # "cat" is a trained class, the others are not
    with (
        running(server_settings(tmp_path, text_cache_entries=1000)) as server,
        httpx.Client(base_url=server.url) as client,
    ):

        def classify(labels: list[str], **fields: object) -> dict:
            response = client.post("/classify", **multipart([blob], labels, **fields))
            assert response.status_code == 200, response.text
            return response.json()

        start = counters(server.url)
        own = classify([], model="pets")
        after_own = counters(server.url)
        cold = classify(new, model="pets")
        after_cold = counters(server.url)
        warm = classify(new, model="pets")
        after_warm = counters(server.url)
        client.post(
            "/admin/models/pets/swap", json={"file": "versions/pets-2.safetensors"}, headers=admin_headers()
        )
        swapped = classify(new, model="pets")
        after_swap = counters(server.url)
        classify(["zebra"], templates="a photo of a {}.")
        classify(["zebra"], templates="a drawing of a {}.")
        classify(["zebra"], templates="a photo of a {}.")
        after_templates = counters(server.url)

    # Stored embeddings are neither hits nor misses: they are not in the LRU.
    assert after_own == start
    assert_matches(own["results"][0], offline_scores(tiny_backbone, first, blob, CLASSES))
    # Mixed request: "cat" comes from the stored rows, "zebra" and "lion" are encoded once, then hit.
    assert after_cold["misses_total"] - after_own["misses_total"] == 2
    assert after_warm["misses_total"] == after_cold["misses_total"]
    assert after_warm["hits_total"] - after_cold["hits_total"] == 2
    assert cold == warm  # served from the cache: bit-identical
    assert_matches(cold["results"][0], offline_scores(tiny_backbone, first, blob, new))
    # A new version has its own keys (and the old version's entries are dropped with it).
    assert after_swap["misses_total"] - after_warm["misses_total"] == 2
    assert after_swap["entries"] == 2
    assert swapped["model"]["version"] == "2"
    assert_matches(swapped["results"][0], offline_scores(tiny_backbone, second, blob, new))
    # Zero-shot: each template set is its own key.
    assert after_templates["misses_total"] - after_swap["misses_total"] == 2
    assert after_templates["hits_total"] - after_swap["hits_total"] == 1


def as_expected(body: dict) -> dict[str, tuple[float, float]]:
    return {p["label"]: (p["score"], p["cosine"]) for p in body["results"][0]["predictions"]}


def test_the_cache_is_bounded_and_evicts_least_recently_used(tmp_path: Path, tiny_backbone: Backbone) -> None:
    blob = image_bytes(4)
    labels = [f"thing {i}" for i in range(6)]
    with (
        running(server_settings(tmp_path, text_cache_entries=4)) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        first = client.post("/classify", **multipart([blob], labels[:4])).json()
        client.post("/classify", **multipart([blob], labels[4:]))  # evicts thing 0 and thing 1
        before = counters(server.url)
        again = client.post("/classify", **multipart([blob], labels[:4])).json()
        after = counters(server.url)
    assert before["entries"] == 4 and after["entries"] == 4
    assert after["misses_total"] - before["misses_total"] == 2
    assert after["hits_total"] - before["hits_total"] == 2
    # Re-encoded in a different batch: equal up to float rounding of a different matmul shape.
    assert_matches(again["results"][0], as_expected(first))


def test_stored_class_embeddings_are_used_as_they_are(tmp_path: Path, tiny_backbone: Backbone) -> None:
    """Scale the stored embeddings of one class: the answer must follow the file, not re-encoding."""
    learner = make_learner(tiny_backbone, seed=5)
    checkpoint = learner.to_checkpoint()
    assert checkpoint.class_embeddings is not None
    checkpoint.class_embeddings[0] = -checkpoint.class_embeddings[0]
    save_checkpoint(tmp_path / "pets.safetensors", checkpoint)
    stored = load_checkpoint(tmp_path / "pets.safetensors").class_embeddings
    assert stored is not None
    blob = image_bytes(6)
    with running(server_settings(tmp_path)) as server:
        own = httpx.post(server.url + "/classify", **multipart([blob], model="pets")).json()
        mixed = httpx.post(
            server.url + "/classify", **multipart([blob], [CLASSES[0], "zebra"], model="pets")
        ).json()
    reference = offline_scores(tiny_backbone, learner, blob, [*CLASSES, "zebra"])
    for body in (own, mixed):
        cosine = {p["label"]: p["cosine"] for p in body["results"][0]["predictions"]}
        assert abs(cosine[CLASSES[0]] + reference[CLASSES[0]][1]) < 1e-5  # the flipped row, as stored
    assert abs(cosine["zebra"] - reference["zebra"][1]) < 1e-5  # encoded with the learned prompt


class CountingVersion:
    """What TextCache needs of a version: an id, no stored classes, and a text side that counts calls."""

    uid, freed = "v1", False

    def __init__(self) -> None:
        self.encoded: list[list[str]] = []

    def precomputed_covers(self, labels: object, templates: object) -> bool:
        return False

    def stored_row(self, label: str, templates: object) -> None:
        return None

    def encode_labels(self, labels: list[str], templates: tuple[str, ...]) -> torch.Tensor:
        self.encoded.append(list(labels))
        return torch.stack([torch.full((4,), float(len(label))) for label in labels])


def test_a_repeated_label_list_is_one_lookup_bounded_in_rows_and_dropped_with_its_version() -> None:
    metrics = Metrics()
    cache, version = TextCache(capacity=4, metrics=metrics), CountingVersion()

    async def scenario() -> None:
        first = await cache.class_matrix(version, ["a", "bb", "ccc"], ())  # type: ignore[arg-type]
        again = await cache.class_matrix(version, ["a", "bb", "ccc"], ())  # type: ignore[arg-type]
        assert again is first  # the assembled matrix itself: no per-label work, no stack
        reordered = await cache.class_matrix(version, ["ccc", "a", "bb"], ())  # type: ignore[arg-type]
        assert torch.equal(reordered.data, first.data[[2, 0, 1]]) and version.encoded == [["a", "bb", "ccc"]]
        assert cache.matrix_rows <= 4 and len(cache.matrices) == 1  # the first matrix was evicted
        assert metrics.cache_hits._value.get() == 6 and metrics.cache_misses._value.get() == 3
        cache.drop_version("v1")
        assert cache.matrices == {} and cache.matrix_rows == 0

    asyncio.run(scenario())
    cache.close()
