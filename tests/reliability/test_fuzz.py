"""Property-based tests: hypothesis over the /classify request models (JSON and multipart) and the
protocol routes' bodies (Hugging Face, /v1/embeddings, /v2 infer with binary tails), and a
schemathesis run over the whole OpenAPI schema (admin routes included, with the token). Neither may
find a 5xx; every refusal is a clean 4xx. Example counts are bounded so this runs in about a minute
on two cores."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.backbone import Backbone
from tests.reliability import corpus
from tests.reliability.conftest import assert_clean_error
from tests.service.conftest import (
    ADMIN_TOKEN,
    ServerThread,
    image_bytes,
    make_learner,
    running,
    server_settings,
    write_checkpoint,
)

EXAMPLES = 25
IMAGES = [
    image_bytes(1),
    corpus.encoded(corpus.noise("CMYK"), "JPEG"),
    corpus.png_claiming(5000, 5000),
    b"",
    b"x",
]

text = st.text(max_size=120)
images = st.lists(
    st.one_of(st.sampled_from(IMAGES), st.binary(max_size=200)), min_size=0, max_size=corpus.MAX_IMAGES + 1
)
json_fields = st.fixed_dictionaries(
    {"images": st.one_of(images.map(lambda bs: [base64.b64encode(b).decode() for b in bs]), st.lists(text))},
    optional={
        "labels": st.one_of(st.none(), st.lists(text, max_size=8), st.lists(st.integers(), max_size=2)),
        "model": st.one_of(st.none(), st.sampled_from(["pets", "zeroshot", "", "nope"]), text),
        "top_k": st.one_of(
            st.none(), st.integers(-5, 10**20), st.floats(allow_nan=True), text, st.booleans()
        ),
        "templates": st.one_of(
            st.none(), st.lists(st.sampled_from(["photo", "{}", "a {} photo", "x"]) | text)
        ),
        "extra": st.integers(),
    },
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_backbone: Backbone) -> Iterator[ServerThread]:
    folder = tmp_path_factory.mktemp("fuzz")
    write_checkpoint(folder / "pets.safetensors", make_learner(tiny_backbone, seed=3))
    write_checkpoint(folder / "versions" / "birds.safetensors", make_learner(tiny_backbone, seed=4))
    settings = server_settings(
        folder,
        max_images=corpus.MAX_IMAGES,
        max_image_pixels=corpus.MAX_IMAGE_PIXELS,
        max_labels=corpus.MAX_LABELS,
        request_timeout_s=30,
    )
    with running(settings) as server:
        yield server


def check(response: httpx.Response, folder: str) -> None:
    if response.status_code == 200:
        assert response.json()["results"]
    else:
        assert_clean_error(response, folder)


FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)


@FUZZ
@given(body=json_fields)
def test_json_requests_get_an_answer_or_a_clean_4xx(server: ServerThread, body: dict[str, Any]) -> None:
    response = httpx.post(server.url + "/classify", json=body, timeout=30)
    check(response, str(server.state.settings.checkpoint_dir))


@FUZZ
@given(
    blobs=images,
    labels=st.lists(text, max_size=8),
    extra=st.dictionaries(st.sampled_from(["model", "top_k", "templates", "colour"]), text, max_size=3),
)
def test_multipart_requests_get_an_answer_or_a_clean_4xx(
    server: ServerThread, blobs: list[bytes], labels: list[str], extra: dict[str, str]
) -> None:
    files = [("images", (f"{i}.png", blob, "image/png")) for i, blob in enumerate(blobs)]
    data: dict[str, Any] = {**extra, "labels": labels} if labels else extra
    response = httpx.post(server.url + "/classify", data=data, files=files or None, timeout=30)
    if not files and response.status_code == 415:  # no files: httpx sends a urlencoded form
        return
    check(response, str(server.state.settings.checkpoint_dir))


@FUZZ
@given(
    blob=st.sampled_from(IMAGES) | st.binary(max_size=300), query=st.lists(st.tuples(text, text), max_size=4)
)
def test_raw_bodies_get_an_answer_or_a_clean_4xx(
    server: ServerThread, blob: bytes, query: list[tuple[str, str]]
) -> None:
    response = httpx.post(
        server.url + "/classify",
        content=blob,
        params=[("labels", "cat"), *query],
        headers={"content-type": "image/png"},
        timeout=30,
    )
    check(response, str(server.state.settings.checkpoint_dir))


b64_images = images.map(lambda bs: [base64.b64encode(b).decode() for b in bs])
labels = st.one_of(st.lists(text, max_size=8), text, st.lists(st.integers(), max_size=2), st.none())
hf_bodies = st.fixed_dictionaries(
    {"inputs": st.one_of(b64_images.map(lambda items: items[0] if items else ""), text, st.integers())},
    optional={
        "parameters": st.fixed_dictionaries(
            {},
            optional={
                "candidate_labels": labels,
                "hypothesis_template": st.one_of(st.sampled_from(["a {} photo", "{}"]), text),
                "top_k": st.one_of(st.integers(-3, 10**20), text, st.booleans()),
                "function_to_apply": text,
            },
        ),
        "options": st.dictionaries(text, st.booleans(), max_size=2),
    },
)
embedding_bodies = st.fixed_dictionaries(
    {"input": st.one_of(text, st.lists(text, max_size=6), b64_images, st.lists(st.integers(), max_size=3))},
    optional={
        "model": st.one_of(st.sampled_from(["pets", "zeroshot", "", "nope"]), text),
        "modality": st.one_of(st.sampled_from(["text", "image"]), text),
        "encoding_format": st.one_of(st.sampled_from(["float", "base64"]), text),
        "prompt": st.one_of(st.sampled_from(["model", "none"]), text),
        "dimensions": st.one_of(st.integers(-2, 2**70), st.none()),
        "input_type": text,
    },
)
tensors = st.fixed_dictionaries(
    {
        "name": st.one_of(st.sampled_from(["images", "labels"]), text),
        "shape": st.lists(st.integers(-2, 2**70), max_size=3),
        "datatype": st.one_of(st.just("BYTES"), text),
    },
    optional={
        "data": st.one_of(b64_images, st.lists(text, max_size=6), st.lists(st.integers(), max_size=3)),
        "parameters": st.dictionaries(
            st.sampled_from(["binary_data_size", "x"]), st.integers(-5, 10**6) | text, max_size=2
        ),
    },
)
infer_bodies = st.fixed_dictionaries(
    {"inputs": st.lists(tensors, max_size=3)},
    optional={
        "id": text,
        "outputs": st.lists(
            st.fixed_dictionaries(
                {"name": st.sampled_from(["scores", "cosines", "labels", "other"])},
                optional={
                    "parameters": st.dictionaries(
                        st.sampled_from(["binary_data", "classification"]), st.booleans() | st.integers()
                    )
                },
            ),
            max_size=4,
        ),
        "parameters": st.dictionaries(
            st.sampled_from(["binary_data_output", "templates", "priority"]), text | st.booleans()
        ),
    },
)


@FUZZ
@given(body=hf_bodies, path=st.sampled_from(["/", "/models/pets", "/models/nope"]))
def test_hugging_face_requests_get_an_answer_or_a_clean_4xx(
    server: ServerThread, body: dict[str, Any], path: str
) -> None:
    response = httpx.post(server.url + path, json=body, timeout=30)
    check_any(response, str(server.state.settings.checkpoint_dir))


@FUZZ
@given(body=embedding_bodies)
def test_embedding_requests_get_an_answer_or_a_clean_4xx(server: ServerThread, body: dict[str, Any]) -> None:
    response = httpx.post(server.url + "/v1/embeddings", json=body, timeout=30)
    check_any(response, str(server.state.settings.checkpoint_dir))


@FUZZ
@given(
    body=infer_bodies,
    binary=st.binary(max_size=300),
    header=st.one_of(
        st.none(),
        st.integers(-5, 5000).map(str),
        # HTTP clients refuse header values with outer whitespace before sending; inner spaces reach us
        st.from_regex(r"[0-9a-z. -]{0,8}", fullmatch=True).filter(lambda value: value == value.strip()),
    ),
    path=st.sampled_from(["/v2/models/zeroshot/infer", "/v2/models/pets/versions/1/infer"]),
)
def test_open_inference_requests_get_an_answer_or_a_clean_4xx(
    server: ServerThread, body: dict[str, Any], binary: bytes, header: str | None, path: str
) -> None:
    """JSON bodies, and JSON header + random binary tail with a random header length."""
    content = json.dumps(body).encode()
    headers = {} if header is None else {"inference-header-content-length": header}
    response = httpx.post(
        server.url + path, content=content + (binary if header else b""), headers=headers, timeout=30
    )
    check_any(response, str(server.state.settings.checkpoint_dir))


def check_any(response: httpx.Response, folder: str) -> None:
    if response.status_code == 200:
        assert response.content
    else:
        assert_clean_error(response, folder)


def test_schemathesis_finds_no_server_error(server: ServerThread, tmp_path: Path) -> None:
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        server.url + "/openapi.json",
        "--checks",
        # no 5xx, and every answer as the schema documents it (status, content type, body, headers)
        "not_a_server_error,status_code_conformance,content_type_conformance,"
        "response_schema_conformance,response_headers_conformance",
        "--max-examples",
        "8",
        "--seed",
        "1",
        "--header",
        f"Authorization: Bearer {ADMIN_TOKEN}",
        "--request-timeout",
        "30",
        "--no-color",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    after = httpx.post(
        server.url + "/classify",
        files=[("images", ("a.png", IMAGES[0], "image/png"))],
        data={"labels": ["a", "b"]},
    )
    assert after.status_code == 200, (after.text, httpx.get(server.url + "/v1/models").text)
