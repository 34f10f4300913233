"""Hot swap across methods under load: a name retrained with another method is swapped in while
traffic flows, moving it between lanes (CoOp: the shared encoder; MaPLe: its own image tower;
CoCoOp: image-conditioned text). No request fails, every answer equals the offline output of the
version it names, each retired version's own lane is closed, and its learner is freed even while
something still holds that closed lane (the test does)."""

from __future__ import annotations

import gc
import time
import weakref
from pathlib import Path

from models.backbone import Backbone, file_sha256
from tests.models.prompts.helpers import MANY_CLASSES
from tests.models.prompts.helpers import make_learner as make_method
from tests.service.conftest import (
    assert_matches,
    image_bytes,
    offline_scores,
    running,
    server_settings,
    wait_until,
)
from tests.service.conftest import write_checkpoint as write
from tests.service.swap_load import swaps_under_load

CYCLE = ("coop", "maple", "cocoop")  # one method per lane kind: shared, custom, conditioned
ROUNDS = 3  # swaps: every move between lane kinds, three times
CLIENTS = 4
NEW_LABELS = ["violin", "cat", "red fox"]  # "violin" is no trained class: encoded with each version's prompt


def test_a_name_swapped_between_methods_and_lanes_under_load_fails_no_request(
    tmp_path: Path, tiny_backbone: Backbone
) -> None:
    learners = {
        name: make_method(name, tiny_backbone, seed=30 + i).serving_learner().eval()
        for i, name in enumerate(CYCLE)
    }
    by_sha = {
        file_sha256(write(tmp_path / f"versions/pets-{name}.safetensors", learner)): learner
        for name, learner in learners.items()
    }
    by_sha[file_sha256(write(tmp_path / "pets.safetensors", learners["coop"]))] = learners["coop"]
    order = [*CYCLE[1:], *CYCLE * (ROUNDS - 1), CYCLE[0]]  # coop -> maple -> cocoop -> coop ... -> coop
    files = [f"versions/pets-{name}.safetensors" for name in order]
    blob = image_bytes(11)
    expected = {
        (sha, tuple(labels)): offline_scores(tiny_backbone, learner, blob, labels)
        for sha, learner in by_sha.items()
        for labels in (MANY_CLASSES, NEW_LABELS)
    }
    held: list = []  # every version's lane and a weak reference to its learner

    with running(server_settings(tmp_path, max_wait_ms=2, watch=False)) as server:
        swaps, results = swaps_under_load(
            server, blob, files, CLIENTS, NEW_LABELS, MANY_CLASSES,
            record=lambda version: held.append((version.lane, weakref.ref(version.learner))),
            wait_s=20, seconds=90,
        )  # fmt: skip
        wait_until(lambda: not server.registry.retired, timeout_s=10)
        shared = server.state.runtime.batcher.shared
        retired = held[:-1]
        for _ in range(250):  # retired lanes close in a task of the server's loop: up to 5 s
            if all(lane.task is None for lane, _ in retired if lane is not shared):
                break
            time.sleep(0.02)
        gc.collect()
        learners_alive = [lane.kind for lane, learner in retired if learner() is not None]
        own_lanes_open = [lane.kind for lane, _ in retired if lane is not shared and lane.task is not None]

    assert [status for status, _ in swaps] == [200] * len(files), swaps
    assert [lane.kind for lane, _ in held] == ["shared", "custom", "conditioned"] * ROUNDS + ["shared"]
    assert [status for _, status, _ in results] == [200] * len(results), "a request failed during swaps"
    seen = {body["model"]["version"] for _, _, body in results}
    assert seen == {str(v) for v in range(1, len(files) + 2)}, f"not every version served: {sorted(seen)}"
    for labels, _, body in results:
        assert_matches(body["results"][0], expected[(body["model"]["sha256"], tuple(labels))], atol=1e-4)
    assert learners_alive == [], "retired versions' learners still in memory"
    assert own_lanes_open == [], "retired versions' own lanes still open"
