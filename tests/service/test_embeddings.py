"""/v1/embeddings and /v1/models: texts through the real `openai` client, images over plain HTTP.

Text vectors equal the model's class embeddings (learned prompt or zero-shot templates) or the
plain text tower; image vectors equal the version's image side, computed in the same lanes and
batches as /classify; and an image vector times a text vector is the cosine /classify reports."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import torch

from models.backbone import Backbone
from models.prompts import PromptLearner
from models.text import encode_texts
from models.zeroshot import class_embedding_matrix
from tests.service.conftest import (
    ServerThread,
    assert_matches,
    image_bytes,
    make_learner,
    multipart,
    offline_pixels,
    offline_scores,
    running,
    server_settings,
    write_checkpoint,
)
from tests.service.learners import ImageConditioned, ShiftedImage
from tests.service.test_batching import batch_histogram

TEXTS = ["cat", "a red car", "red_star"]  # a trained class of `pets`, new labels


@pytest.fixture(scope="module")
def learners(tiny_backbone: Backbone) -> dict[str, PromptLearner]:
    return {
        "pets": make_learner(tiny_backbone, seed=7),
        "shifted": make_learner(tiny_backbone, seed=8, method=ShiftedImage),
        "conditioned": make_learner(tiny_backbone, seed=9, method=ImageConditioned),
    }


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, learners: dict[str, PromptLearner]
) -> Iterator[ServerThread]:
    folder = tmp_path_factory.mktemp("embeddings")
    for name, learner in learners.items():
        write_checkpoint(folder / f"{name}.safetensors", learner)
    with pytest.MonkeyPatch.context() as patch:
        from models.prompts import METHODS

        for method in (ShiftedImage, ImageConditioned):
            patch.setitem(METHODS, method.method, method)
        with running(server_settings(folder, max_batch_size=8, max_images=4)) as server:
            yield server


@pytest.fixture
def client(server: ServerThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def vectors(response: Any) -> np.ndarray:
    return np.array([item.embedding for item in response.data], dtype=np.float32)


def post_images(url: str, model: str, blobs: list[bytes], **fields: Any) -> httpx.Response:
    inputs = ["data:image/png;base64," + base64.b64encode(blob).decode() for blob in blobs]
    body = {"model": model, "input": inputs, "modality": "image", **fields}
    return httpx.post(url + "/v1/embeddings", json=body, timeout=30)


def test_texts_through_the_openai_client_use_the_model_prompt(
    client: openai.OpenAI, tiny_backbone: Backbone, learners: dict[str, PromptLearner]
) -> None:
    # The client asks for base64 by default and decodes it; float is the other encoding.
    as_base64 = client.embeddings.create(model="pets", input=TEXTS)
    as_float = client.embeddings.create(model="pets", input=TEXTS, encoding_format="float")
    with torch.no_grad():
        expected = learners["pets"].class_embeddings(TEXTS).float().numpy()
    np.testing.assert_allclose(vectors(as_base64), expected, atol=1e-5)
    np.testing.assert_allclose(vectors(as_float), expected, atol=1e-5)
    assert as_base64.model == "pets" and [item.index for item in as_base64.data] == [0, 1, 2]
    tokens = sum(len(tiny_backbone.tokenizer.encode(text)) + 2 for text in TEXTS)
    assert as_base64.usage.prompt_tokens == as_base64.usage.total_tokens == tokens


def test_zeroshot_texts_use_its_templates_and_prompt_none_the_plain_tower(
    client: openai.OpenAI, tiny_backbone: Backbone
) -> None:
    templated = client.embeddings.create(model="zeroshot", input=TEXTS)
    expected = class_embedding_matrix(tiny_backbone, TEXTS, ("a photo of a {}.",)).numpy()
    np.testing.assert_allclose(vectors(templated), expected, atol=1e-5)
    plain = client.embeddings.create(model="pets", input="red_star", extra_body={"prompt": "none"})
    np.testing.assert_allclose(vectors(plain), encode_texts(tiny_backbone, ["red_star"]).numpy(), atol=1e-5)
    assert abs(float(np.linalg.norm(vectors(plain)[0])) - 1) < 1e-5


@pytest.mark.parametrize("model", ["zeroshot", "pets", "shifted", "conditioned"])
def test_image_vectors_are_the_version_image_side(
    server: ServerThread, tiny_backbone: Backbone, learners: dict[str, PromptLearner], model: str
) -> None:
    blobs = [image_bytes(31), image_bytes(32, size=(70, 20))]
    response = post_images(server.url, model, blobs, encoding_format="base64")
    assert response.status_code == 200, response.text
    got = np.stack([np.frombuffer(base64.b64decode(i["embedding"]), "<f4") for i in response.json()["data"]])
    pixels = torch.cat([offline_pixels(tiny_backbone, blob) for blob in blobs])
    with torch.no_grad():
        # MaPLe-like methods embed with their own image side; CoCoOp/GOPro-like ones with the stock one
        side = learners["shifted"].image_embeddings if model == "shifted" else tiny_backbone.encode_images
        expected = side(pixels).float().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert response.json()["usage"] == {"prompt_tokens": 0, "total_tokens": 0}


def test_image_times_text_is_the_classify_cosine(server: ServerThread, client: openai.OpenAI) -> None:
    blob = image_bytes(33)
    image = np.array(post_images(server.url, "pets", [blob]).json()["data"][0]["embedding"], dtype=np.float32)
    texts = vectors(client.embeddings.create(model="pets", input=TEXTS))
    classified = httpx.post(server.url + "/classify", **multipart([blob], TEXTS, model="pets")).json()
    for prediction in classified["results"][0]["predictions"]:
        cosine = float(texts[TEXTS.index(prediction["label"])] @ image)
        assert abs(cosine - prediction["cosine"]) < 1e-5, (prediction, cosine)


def test_image_embeddings_share_batches_with_classification(tmp_path: Any, tiny_backbone: Backbone) -> None:
    """Two embedding jobs and two classification jobs in ONE encoder pass, each with its own answer."""
    blobs = [image_bytes(34), image_bytes(35), image_bytes(36), image_bytes(37)]
    settings = server_settings(tmp_path, max_batch_size=4, max_wait_ms=2000)

    async def fire(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            requests = [
                http.post(
                    "/v1/embeddings",
                    json={"model": "zeroshot", "modality": "image", "input": [base64.b64encode(b).decode()]},
                )
                for b in blobs[:2]
            ]
            requests += [http.post("/classify", **multipart([b], ["cat", "dog"])) for b in blobs[2:]]
            return list(await asyncio.gather(*requests))

    with running(settings) as server:
        before = batch_histogram(server.url).get("shared", {}).get("count", 0)
        answers = asyncio.run(fire(server.url))
        after = batch_histogram(server.url)["shared"]
    assert after["count"] - before == 1 and after["le=4.0"] - after["le=2.0"] == 1  # one pass of 4
    for blob, answer in zip(blobs[:2], answers[:2], strict=True):
        expected = tiny_backbone.encode_images(offline_pixels(tiny_backbone, blob))[0].numpy()
        np.testing.assert_allclose(answer.json()["data"][0]["embedding"], expected, atol=1e-5)
    for blob, answer in zip(blobs[2:], answers[2:], strict=True):
        assert_matches(answer.json()["results"][0], offline_scores(tiny_backbone, None, blob, ["cat", "dog"]))


def test_refusals(server: ServerThread, client: openai.OpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError, match="conditions its text on each image"):
        client.embeddings.create(model="conditioned", input="cat")
    assert (
        len(client.embeddings.create(model="conditioned", input="cat", extra_body={"prompt": "none"}).data)
        == 1
    )
    with pytest.raises(openai.NotFoundError, match="unknown model 'nope'"):
        client.embeddings.create(model="nope", input="cat")
    with pytest.raises(openai.UnprocessableEntityError, match="dimensions=3"):
        client.embeddings.create(model="pets", input="cat", dimensions=3)
    too_many = post_images(server.url, "zeroshot", [image_bytes(1)] * 5)
    assert too_many.status_code == 413 and "max_images=4" in too_many.json()["error"]["message"]
    url = httpx.post(
        server.url + "/v1/embeddings",
        json={"model": "pets", "input": ["http://x/a.png"], "modality": "image"},
    )
    assert url.status_code == 403 and "image URLs are off" in url.json()["error"]["message"]
    cohere = httpx.post(
        server.url + "/v1/embeddings", json={"model": "pets", "input": "x", "input_type": "image"}
    )
    assert cohere.status_code == 422 and "input_type" in cohere.json()["error"]["message"]


def test_models_list_and_retrieve_through_the_openai_client(client: openai.OpenAI) -> None:
    listed = {model.id: model for model in client.models.list()}
    assert {"zeroshot", "pets", "shifted", "conditioned"} <= set(listed)
    assert all(m.object == "model" and m.owned_by == "clipserve" and m.created > 0 for m in listed.values())
    pets = client.models.retrieve("pets")
    assert pets.id == "pets" and pets.created == listed["pets"].created
    assert pets.model_extra is not None and pets.model_extra["method"] == "coop"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")
