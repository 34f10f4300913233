"""Every method in METHODS serves end to end: the checkpoint training exports
(`serving_learner().to_checkpoint()`) loads, lands in the lane its ClassVars ask for, and answers
with the learner's own offline logits, for its classes and for new labels."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from models.backbone import Backbone
from models.prompts import METHODS, PromptLearner
from tests.models.prompts.helpers import MANY_CLASSES
from tests.models.prompts.helpers import make_learner as make_method
from tests.service.conftest import (
    assert_matches,
    image_bytes,
    multipart,
    offline_scores,
    running,
    server_settings,
    write_checkpoint,
)

NEW_LABELS = ["violin", "cat"]


def expected_lane(learner: PromptLearner) -> str:
    if learner.image_conditioned:
        return "conditioned"
    return "custom" if learner.custom_image_encoder else "shared"


@pytest.mark.slow
def test_every_method_serves_its_exported_checkpoint(tmp_path: Path, tiny_backbone: Backbone) -> None:
    served = {}
    for i, name in enumerate(METHODS):
        learner = make_method(name, tiny_backbone, seed=i).serving_learner().eval()
        write_checkpoint(tmp_path / f"m-{name}.safetensors", learner)
        served[f"m-{name}"] = learner
    blob = image_bytes(21)
    settings = server_settings(tmp_path)
    with running(settings) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        lanes = {m["name"]: m["lane"] for m in client.get("/v1/models").json()["data"]}
        answers = {}
        for model in served:
            for labels in ([], NEW_LABELS):
                request = multipart([blob], labels, model=model, top_k=10)
                answers[(model, tuple(labels))] = client.post("/classify", **request)

    for model, learner in served.items():
        assert lanes[model] == expected_lane(learner), model
    for (model, labels), response in answers.items():
        assert response.status_code == 200, (model, response.text)
        learner = served[model]
        expected = offline_scores(tiny_backbone, learner, blob, list(labels) or MANY_CLASSES)
        assert_matches(response.json()["results"][0], expected, atol=1e-4)
