"""The Open Inference Protocol v2 through the real client: tritonclient.http (InferInput /
InferRequestedOutput, binary tensor data by default, and JSON data) against a real server; scores
equal unbatched offline inference; errors arrive as InferenceServerException with the message."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

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
IMAGES = [image_bytes(21), image_bytes(22, size=(30, 60), fmt="JPEG")]


@pytest.fixture(scope="module")
def pets(tiny_backbone: Backbone) -> PromptLearner:
    return make_learner(tiny_backbone, seed=6)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, pets: PromptLearner) -> Iterator[ServerThread]:
    folder = tmp_path_factory.mktemp("v2")
    write_checkpoint(folder / "pets.safetensors", pets)
    with running(server_settings(folder)) as server:
        yield server


@pytest.fixture
def client(server: ServerThread) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    yield client
    client.close()


def bytes_input(name: str, items: list[bytes] | list[str], binary: bool = True) -> triton.InferInput:
    tensor = triton.InferInput(name, [len(items)], "BYTES")
    tensor.set_data_from_numpy(np.array(items, dtype=np.object_), binary_data=binary)
    return tensor


def expected_matrix(
    backbone: Backbone, learner: PromptLearner | None, labels: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """[N, C] scores and cosines, one image at a time through the offline reference."""
    rows = [offline_scores(backbone, learner, blob, labels) for blob in IMAGES]
    scores = np.array([[row[label][0] for label in labels] for row in rows], dtype=np.float32)
    cosines = np.array([[row[label][1] for label in labels] for row in rows], dtype=np.float32)
    return scores, cosines


def test_health_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("pets") and client.is_model_ready("pets", "1")
    assert not client.is_model_ready("pets", "2") and not client.is_model_ready("nope")
    server = client.get_server_metadata()
    assert server["name"] == "clipserve" and "binary_tensor_data" in server["extensions"]
    model = client.get_model_metadata("pets")
    assert model["name"] == "pets" and model["versions"] == ["1"]
    assert [(t["name"], t["datatype"]) for t in model["inputs"]] == [("images", "BYTES"), ("labels", "BYTES")]
    assert [t["name"] for t in model["outputs"]] == ["scores", "cosines", "labels"]


def test_binary_tensors_in_and_out_match_offline(
    client: triton.InferenceServerClient, tiny_backbone: Backbone
) -> None:
    """tritonclient's defaults: BYTES inputs and all outputs as binary data."""
    inputs = [bytes_input("images", IMAGES), bytes_input("labels", LABELS)]
    result = client.infer("zeroshot", inputs, request_id="req-7")
    scores, cosines = expected_matrix(tiny_backbone, None, LABELS)
    np.testing.assert_allclose(result.as_numpy("scores"), scores, atol=1e-5)
    np.testing.assert_allclose(result.as_numpy("cosines"), cosines, atol=1e-5)
    assert result.as_numpy("labels").tolist() == [label.encode() for label in LABELS]
    response = result.get_response()
    assert response["model_name"] == "zeroshot" and response["model_version"] == "1"
    assert response["id"] == "req-7"


def test_json_tensors_with_base64_images(
    client: triton.InferenceServerClient, tiny_backbone: Backbone
) -> None:
    """binary_data=False everywhere: images go as base64 strings, answers come back as JSON data."""
    encoded = [base64.b64encode(blob).decode() for blob in IMAGES]
    inputs = [bytes_input("images", encoded, binary=False), bytes_input("labels", LABELS, binary=False)]
    outputs = [triton.InferRequestedOutput("scores", binary_data=False)]
    result = client.infer("zeroshot", inputs, outputs=outputs)
    scores, _ = expected_matrix(tiny_backbone, None, LABELS)
    np.testing.assert_allclose(result.as_numpy("scores"), scores, atol=1e-5)
    assert [o["name"] for o in result.get_response()["outputs"]] == ["scores"]


def test_a_checkpoint_uses_its_own_classes_without_labels(
    client: triton.InferenceServerClient, tiny_backbone: Backbone, pets: PromptLearner
) -> None:
    outputs = [triton.InferRequestedOutput(name) for name in ("labels", "scores")]
    result = client.infer("pets", [bytes_input("images", IMAGES)], model_version="1", outputs=outputs)
    scores, _ = expected_matrix(tiny_backbone, pets, CLASSES)
    np.testing.assert_allclose(result.as_numpy("scores"), scores, atol=1e-5)
    assert result.as_numpy("labels").tolist() == [c.encode() for c in CLASSES]


@pytest.mark.parametrize(
    ("model", "version", "inputs", "status", "words"),
    [
        ("nope", "", [("images", IMAGES)], "404", "unknown model 'nope'"),
        ("pets", "3", [("images", IMAGES)], "404", "serves version 1"),
        ("zeroshot", "", [("labels", LABELS)], "422", "'images'"),
        ("zeroshot", "", [("images", IMAGES)], "422", "pass labels"),
        ("zeroshot", "", [("images", [b"not an image"]), ("labels", LABELS)], "415", "not an image"),
        ("zeroshot", "", [("images", IMAGES), ("pixels", LABELS)], "422", "unknown input 'pixels'"),
    ],
)
def test_errors_reach_the_client_with_status_and_message(
    client: triton.InferenceServerClient,
    model: str,
    version: str,
    inputs: list[tuple[str, list]],
    status: str,
    words: str,
) -> None:
    with pytest.raises(InferenceServerException) as error:
        client.infer(model, [bytes_input(name, items) for name, items in inputs], model_version=version)
    assert error.value.status() == status and words in error.value.message(), error.value


def test_protocol_error_shape_and_health_over_plain_http(server: ServerThread) -> None:
    """{"error": "<message>"} under /v2, also for unknown paths and methods; empty health bodies."""
    for response in (
        httpx.post(server.url + "/v2/models/zeroshot/infer", content=b"{"),
        httpx.get(server.url + "/v2/models/nope"),
        httpx.get(server.url + "/v2/no/such/path"),
        httpx.get(server.url + "/v2/models/zeroshot/infer"),
    ):
        body = response.json()
        assert 400 <= response.status_code < 500 and set(body) == {"error"}, body
        assert isinstance(body["error"], str) and body["error"]
    live = httpx.get(server.url + "/v2/health/live")
    assert live.status_code == 200 and live.content == b""


def test_templates_parameter_applies_and_unknown_parameters_are_refused(
    server: ServerThread, tiny_backbone: Backbone
) -> None:
    data = base64.b64encode(IMAGES[0]).decode()
    images = {"name": "images", "shape": [1], "datatype": "BYTES", "data": [data]}
    labels = {"name": "labels", "shape": [2], "datatype": "BYTES", "data": ["cat", "dog"]}
    cases = [
        ({"inputs": [images, labels], "parameters": {"sequence_id": 3}}, "unknown request parameters"),
        (
            {
                "inputs": [images, labels],
                "outputs": [{"name": "scores", "parameters": {"classification": 2}}],
            },
            "classification",
        ),
        ({"inputs": [images, labels], "outputs": [{"name": "logits"}]}, "unknown output 'logits'"),
        ({"inputs": [images, {**labels, "datatype": "FP32"}]}, "BYTES"),
        ({"inputs": [images, {**labels, "shape": [3]}]}, "needs 3 elements"),
    ]
    for body, words in cases:
        response = httpx.post(server.url + "/v2/models/zeroshot/infer", json=body)
        assert response.status_code == 422 and words in response.json()["error"], (body, response.text)
    templated = {"inputs": [images, labels], "parameters": {"templates": "a sketch of a {}."}}
    answer = httpx.post(server.url + "/v2/models/zeroshot/infer", json=templated).json()
    expected = offline_scores(tiny_backbone, None, IMAGES[0], ["cat", "dog"], ("a sketch of a {}.",))
    scores = next(o for o in answer["outputs"] if o["name"] == "scores")["data"]
    np.testing.assert_allclose(scores, [expected["cat"][0], expected["dog"][0]], atol=1e-5)
