"""Operations at the front door: X-Request-ID and the access log, JSON logs, CORS, GET /, query fields
on every content type, per-model request counts and process metrics; against a real server."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator

import httpx
import pytest

from service.logs import JsonFormatter, RequestIdFilter, request_id
from tests.service.conftest import (
    ServerThread,
    image_bytes,
    make_learner,
    multipart,
    running,
    server_settings,
    write_checkpoint,
)

ORIGIN = "https://app.example.com"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_backbone: object) -> Iterator[ServerThread]:
    folder = tmp_path_factory.mktemp("ops")
    write_checkpoint(folder / "pets.safetensors", make_learner(tiny_backbone, seed=1))  # type: ignore[arg-type]
    with running(server_settings(folder, cors_origins=ORIGIN)) as server:
        yield server


def post(server: ServerThread, params: dict[str, str] | None = None, **kwargs: object) -> httpx.Response:
    return httpx.post(server.url + "/classify", params=params, timeout=30, **kwargs)  # type: ignore[arg-type]


def metric(text: str, name: str, **labels: str) -> float:
    """The sample of `name` with exactly these labels (in any order), 0 when absent."""
    for line in text.splitlines():
        series, _, value = line.rpartition(" ")
        metric_name, _, label_text = series.partition("{")
        found = dict(re.findall(r'(\w+)="([^"]*)"', label_text))
        if metric_name == name and found == labels:
            return float(value)
    return 0.0


def test_request_ids_are_echoed_or_made_and_logged(
    server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="clipserve.access")
    given = httpx.get(server.url + "/health/live", headers={"X-Request-ID": "req-123.abc"})
    assert given.headers["x-request-id"] == "req-123.abc"
    made = httpx.get(server.url + "/v1/models", headers={"X-Request-ID": "bad id\twith spaces"})
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    records = [r for r in caplog.records if r.name == "clipserve.access"]
    by_id = {getattr(r, "request_id", None): r for r in records}
    assert by_id["req-123.abc"].status == 200 and by_id["req-123.abc"].path == "/health/live"  # type: ignore[attr-defined]
    assert made.headers["x-request-id"] in by_id


def test_json_logs_carry_the_request_id_and_extra_fields() -> None:
    record = logging.LogRecord("clipserve.access", logging.INFO, __file__, 1, "GET %s", ("/x",), None)
    record.status = 200
    token = request_id.set("rid-7")
    try:
        RequestIdFilter().filter(record)
    finally:
        request_id.reset(token)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "GET /x" and line["request_id"] == "rid-7" and line["status"] == 200
    assert line["level"] == "INFO" and line["logger"] == "clipserve.access" and line["time"].endswith("Z")


def test_cors_answers_listed_origins_only(server: ServerThread) -> None:
    preflight = httpx.options(
        server.url + "/classify",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == ORIGIN
    other = httpx.get(server.url + "/v1/models", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    with running(server_settings(warmup=False)) as plain:  # off by default
        answer = httpx.get(plain.url + "/health/live", headers={"Origin": ORIGIN})
        assert "access-control-allow-origin" not in answer.headers


def test_root_leads_to_the_ui(server: ServerThread) -> None:
    root = httpx.get(server.url + "/", follow_redirects=False)
    assert root.status_code == 307 and root.headers["location"] == "ui/"
    assert httpx.get(server.url + "/", follow_redirects=True).url.path == "/ui/"


def test_query_fields_apply_to_multipart_and_json_or_are_refused(server: ServerThread) -> None:
    labels = ["cat", "dog", "bird", "fish"]
    form = multipart([image_bytes(2)], labels)
    one = post(server, {"top_k": "1"}, **form)
    assert one.status_code == 200 and len(one.json()["results"][0]["predictions"]) == 1
    json_body = {"images": [__import__("base64").b64encode(image_bytes(2)).decode()], "labels": labels}
    assert len(post(server, {"top_k": "2"}, json=json_body).json()["results"][0]["predictions"]) == 2
    both = post(server, {"top_k": "1"}, **multipart([image_bytes(2)], labels, top_k=3))
    assert both.status_code == 422 and "given both in the body and in the query string" in both.text
    unknown = post(server, {"colour": "red"}, **form)
    assert unknown.status_code == 422 and "unknown query parameters: colour" in unknown.text
    assert post(server, {"model": "pets"}, **multipart([image_bytes(2)])).json()["model"]["name"] == "pets"


def test_requests_are_counted_per_loaded_model_only(server: ServerThread) -> None:
    before = httpx.get(server.url + "/metrics").text
    post(server, {"model": "pets"}, **multipart([image_bytes(3)]))
    post(server, {"model": "no-such-model-xyz"}, **multipart([image_bytes(3)], ["a"]))
    post(server, content=b"not json", headers={"content-type": "application/json"})
    after = httpx.get(server.url + "/metrics").text
    name = "clipserve_model_requests_total"
    assert metric(after, name, model="pets", code="200") == metric(before, name, model="pets", code="200") + 1
    assert (
        metric(after, name, model="unknown", code="404")
        == metric(before, name, model="unknown", code="404") + 1
    )
    assert (
        metric(after, name, model="unknown", code="400")
        == metric(before, name, model="unknown", code="400") + 1
    )
    assert "no-such-model-xyz" not in after


def test_process_metrics_are_exported(server: ServerThread) -> None:
    text = httpx.get(server.url + "/metrics").text
    assert metric(text, "clipserve_process_cpu_seconds_total") > 0
    assert metric(text, "clipserve_process_resident_memory_bytes") > 10_000_000
    assert metric(text, "clipserve_process_open_fds") > 3
