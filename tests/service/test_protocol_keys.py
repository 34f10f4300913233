"""With API keys set, each client authenticates the way it always does: huggingface_hub's token,
openai's api_key (both `Authorization: Bearer`), tritonclient's headers; Open Inference health stays
public for probes."""

from __future__ import annotations

import numpy as np
import openai
import pytest
import tritonclient.http as triton
from huggingface_hub import InferenceClient
from huggingface_hub.errors import HfHubHTTPError
from tritonclient.utils import InferenceServerException

from tests.service.conftest import image_bytes, running, server_settings

KEY = "protocol-test-key"


def test_each_client_sends_its_key() -> None:
    blob = image_bytes(51)
    with running(server_settings(api_keys=KEY)) as server:
        labels = ["cat", "dog"]
        assert (
            len(InferenceClient(base_url=server.url, token=KEY).zero_shot_image_classification(blob, labels))
            == 2
        )
        with pytest.raises(HfHubHTTPError) as refused:
            InferenceClient(base_url=server.url, token="wrong").zero_shot_image_classification(blob, labels)
        assert refused.value.response.status_code == 401

        embeddings = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0).embeddings
        assert len(embeddings.create(model="zeroshot", input="cat").data) == 1
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0).embeddings.create(
                model="zeroshot", input="cat"
            )

        client = triton.InferenceServerClient(server.url.removeprefix("http://"))
        images = triton.InferInput("images", [1], "BYTES")
        images.set_data_from_numpy(np.array([blob], dtype=np.object_))
        names = triton.InferInput("labels", [2], "BYTES")
        names.set_data_from_numpy(np.array(labels, dtype=np.object_))
        assert client.is_server_live() and client.is_server_ready()  # probes carry no keys
        result = client.infer("zeroshot", [images, names], headers={"Authorization": f"Bearer {KEY}"})
        assert result.as_numpy("scores").shape == (1, 2)
        with pytest.raises(InferenceServerException) as missing:
            client.infer("zeroshot", [images, names])
        assert missing.value.status() == "401" and "API key" in missing.value.message()
        client.close()
