"""Hugging Face zero-shot image classification through the real client:
`huggingface_hub.InferenceClient(base_url=...)` against a real server reaches POST / (default
model) and POST /models/{name} unchanged, and its answers equal unbatched offline inference."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest
from huggingface_hub import InferenceClient
from huggingface_hub.errors import HfHubHTTPError

from models.backbone import Backbone
from models.prompts import PromptLearner
from tests.service.conftest import (
    CLASSES,
    ServerThread,
    image_bytes,
    make_learner,
    offline_scores,
    running,
    server_settings,
    write_checkpoint,
)

LABELS = ["a red car", "a small boat", "tree"]


@pytest.fixture(scope="module")
def pets(tiny_backbone: Backbone) -> PromptLearner:
    return make_learner(tiny_backbone, seed=5)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, pets: PromptLearner) -> Iterator[ServerThread]:
    folder = tmp_path_factory.mktemp("hf")
    write_checkpoint(folder / "pets.safetensors", pets)
    with running(server_settings(folder)) as server:
        yield server


def assert_hf_answer(answer: list, expected: dict[str, tuple[float, float]]) -> None:
    """Every label once, sorted by score, each score equal to the offline one."""
    assert sorted(item.label for item in answer) == sorted(expected)
    scores = [item.score for item in answer]
    assert scores == sorted(scores, reverse=True)
    for item in answer:
        assert abs(item.score - expected[item.label][0]) < 1e-5, (item, expected[item.label])


def test_zero_shot_through_the_client_matches_offline(server: ServerThread, tiny_backbone: Backbone) -> None:
    blob = image_bytes(11)
    client = InferenceClient(base_url=server.url)
    answer = client.zero_shot_image_classification(blob, candidate_labels=LABELS)
    assert_hf_answer(answer, offline_scores(tiny_backbone, None, blob, LABELS))


def test_hypothesis_template_is_the_zeroshot_template(server: ServerThread, tiny_backbone: Backbone) -> None:
    blob = image_bytes(12)
    client = InferenceClient(base_url=server.url)
    answer = client.zero_shot_image_classification(
        blob, candidate_labels=LABELS, hypothesis_template="a sketch of a {}."
    )
    assert_hf_answer(answer, offline_scores(tiny_backbone, None, blob, LABELS, ("a sketch of a {}.",)))


def test_a_named_model_by_url_path(
    server: ServerThread, tiny_backbone: Backbone, pets: PromptLearner
) -> None:
    blob = image_bytes(13)
    client = InferenceClient(base_url=server.url + "/models/pets")
    labels = ["cat", "a red car"]  # a trained class (stored embedding) and a new label
    answer = client.zero_shot_image_classification(blob, candidate_labels=labels)
    assert_hf_answer(answer, offline_scores(tiny_backbone, pets, blob, labels))


def test_image_classification_scores_the_model_own_classes(
    server: ServerThread, tiny_backbone: Backbone, pets: PromptLearner
) -> None:
    blob = image_bytes(14)
    client = InferenceClient(base_url=server.url + "/models/pets")
    expected = offline_scores(tiny_backbone, pets, blob, CLASSES)
    assert_hf_answer(client.image_classification(blob), expected)  # raw image bytes, no parameters
    top = client.image_classification(blob, top_k=2)  # JSON with parameters.top_k
    assert [item.label for item in top] == sorted(expected, key=lambda c: -expected[c][0])[:2]


def test_refusals_reach_the_client_with_their_message(server: ServerThread) -> None:
    blob = image_bytes(15)
    pets = InferenceClient(base_url=server.url + "/models/pets")
    with pytest.raises(HfHubHTTPError) as refused:
        pets.zero_shot_image_classification(blob, candidate_labels=LABELS, hypothesis_template="a {} photo")
    assert refused.value.response.status_code == 422 and "templates apply to the zeroshot model" in str(
        refused.value
    )
    unknown = InferenceClient(base_url=server.url + "/models/nope")
    with pytest.raises(HfHubHTTPError) as missing:
        unknown.zero_shot_image_classification(blob, candidate_labels=LABELS)
    assert missing.value.response.status_code == 404 and "unknown model 'nope'" in str(missing.value)


def test_json_shapes_over_plain_http(server: ServerThread) -> None:
    """Comma-separated labels, a data: URI, and what the client never sends: a URL (off by default), no
    labels."""
    blob = image_bytes(16)
    uri = "data:image/png;base64," + base64.b64encode(blob).decode()
    split = httpx.post(server.url, json={"inputs": uri, "parameters": {"candidate_labels": "cat, dog"}})
    assert split.status_code == 200 and {item["label"] for item in split.json()} == {"cat", "dog"}
    url = httpx.post(server.url, json={"inputs": "https://example.com/a.png", "parameters": {}})
    assert url.status_code == 403 and "image URLs are off" in url.json()["error"]["message"]
    no_labels = httpx.post(server.url, json={"inputs": uri})  # zeroshot has no classes of its own
    assert no_labels.status_code == 422 and "pass labels" in no_labels.json()["error"]["message"]
    form = httpx.post(server.url, data={"inputs": "x"})
    assert form.status_code == 415
