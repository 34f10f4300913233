"""bench/overhead.py end to end at its smallest (its five real servers, both request shapes, py-spy),
and the stage attribution of the profile on hand-written stacks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import overhead
from bench.images import photo_jpeg
from bench.overhead_profile import attribute, py_spy, stage_of
from bench.overhead_servers import IdentityEncoder, bare_app, clipserve_decoder


def test_every_server_both_shapes_and_the_section(tmp_path: Path) -> None:
    out, figures_json = tmp_path / "PERFORMANCE.md", tmp_path / "overhead.json"
    profile = ["--profile", "--profile-seconds", "1"] if py_spy() else ["--no-profile"]
    figures = overhead.main(
        ["--seconds", "0.5", "--rounds", "1", "--warmup-seconds", "0.3", "--clients", "2",
         "--images", "1", "3", *profile, "--out", str(out), "--json", str(figures_json)]
    )  # fmt: skip
    results = figures["results"]
    assert set(results) == {f"{name} x{n}" for name in overhead.SERVERS for n in (1, 3)}
    for row in results.values():
        assert row["non_200"] == {} and row["answered"] > 0, row
        assert row["requests_per_s"] > 0 and row["cpu_us_per_request"] > 0
    text = out.read_text()
    assert "<!-- bench:overhead:start -->" in text and "| clipserve identity | 3 |" in text
    assert "bench/overhead.py --seconds 0.5" in text and "load average at start" in text
    assert "Against `bare + decode`, the floor of a server that decodes: " in text
    if py_spy():
        assert set(figures["profile"]) == {"busy threads", "GIL holder"}, figures["profile"]
        assert "| decode (Pillow) |" in text and "batch wait (queue)" in text
    assert figures_json.exists()


def test_the_decoding_floor_decodes_what_the_bare_floor_only_reads_the_header_of() -> None:
    from fastapi.testclient import TestClient

    from service.errors import CorruptImage

    jpeg = photo_jpeg(64, 48)
    cut = jpeg[: len(jpeg) // 2]  # the header is whole, the pixel data cut short
    bare = TestClient(bare_app())
    assert bare.post("/classify", files={"images": ("a.jpg", cut, "image/jpeg")}).status_code == 200
    decoding = TestClient(bare_app(clipserve_decoder("clipserve-tiny-vit")))
    with pytest.raises(CorruptImage):
        decoding.post("/classify", files={"images": ("a.jpg", cut, "image/jpeg")})
    assert decoding.post("/classify", files={"images": ("a.jpg", jpeg, "image/jpeg")}).status_code == 200


def test_the_identity_encoder_gives_unit_features_of_the_models_width() -> None:
    encoder = IdentityEncoder(dim=24, device=torch.device("cpu"))
    features = encoder(torch.rand(5, 3, 32, 32))
    assert features.shape == (5, 24)
    assert torch.allclose(features.norm(dim=-1), torch.ones(5))
    assert torch.equal(encoder(torch.ones(1, 3, 32, 32)), encoder(torch.ones(1, 3, 32, 32)))


@pytest.mark.parametrize(
    ("stack", "stage"),
    [
        ("run (uvicorn/server.py:1);score (service/api/classify.py:46)", "score: softmax + top-k"),
        ("Admission.__call__ (service/api/admission.py:60);send (uvicorn/protocols/http/h.py:524)",
         "framework (uvicorn, starlette, fastapi, asyncio)"),
        ("Admission.__call__ (service/api/admission.py:60);uuid4 (uuid.py:723)", "service middleware"),
        ("decode (service/engine/decode.py:150);load (PIL/ImageFile.py:1)", "decode (Pillow)"),
        ("_part (service/api/multipart.py:142);<lambda> (<string>:1)", "parse (multipart, fields)"),
        ("_run (service/engine/batcher.py:175);submit (concurrent/futures/thread.py:175)",
         "thread hand-offs (submit, wake, wait)"),
        ("x (a.py:1)", "other"),
    ],
)  # fmt: skip
def test_a_sample_goes_to_its_innermost_stage(stack: str, stage: str) -> None:
    assert stage_of(stack) == stage


def test_attribute_sums_counts_per_stage() -> None:
    raw = "a (service/api/multipart.py:1) 3\nb (PIL/Image.py:2);c (x.py:1) 4\nnot a sample line\n"
    assert attribute(raw) == {"parse (multipart, fields)": 3, "decode (Pillow)": 4}
