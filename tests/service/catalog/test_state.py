"""The model state's rules (catalog/state.py): version numbers never reused, top-level files
recorded once per content, the admin API's refusals, and a file that is not a state refused with
the reason."""

from __future__ import annotations

import json

import pytest

from service.catalog.state import Entry, ModelState, StateError, encode, parse
from service.errors import Conflict, Invalid, NotFound

SHA_A, SHA_B = "a" * 64, "b" * 64
T = 1_764_633_600  # when a version is recorded


def test_versions_count_up_per_name_and_are_never_reused_after_an_unload() -> None:
    state = ModelState().with_version("pets", "versions/a.safetensors", SHA_A, exists=False, now=T)
    state = state.with_version("pets", "versions/b.safetensors", SHA_B, exists=True, now=T)
    assert state.models["pets"] == Entry("versions/b.safetensors", SHA_B, 2, T)
    state = state.without_model("pets", fallback_default="zeroshot")
    assert "pets" not in state.models
    state = state.with_version("pets", "versions/a.safetensors", SHA_A, exists=False, now=T)
    assert state.models["pets"].version == 3  # a response naming pets 1 or 2 meant other bytes


def test_a_top_level_file_becomes_a_version_once_per_content() -> None:
    state = ModelState().absorb("flowers.safetensors", SHA_A, now=T)
    assert state.models["flowers"] == Entry("flowers.safetensors", SHA_A, 1, T)
    assert state.absorb("flowers.safetensors", SHA_A, now=T) is state  # another worker, or a restart
    state = state.with_version("flowers", "versions/x.safetensors", SHA_B, exists=True, now=T)  # admin swap
    assert state.absorb("flowers.safetensors", SHA_A, now=T) is state  # the swap sticks until it changes
    changed = state.absorb("flowers.safetensors", SHA_B, now=T)
    assert changed.models["flowers"] == Entry("flowers.safetensors", SHA_B, 3, T)


def test_admin_refusals_name_the_conflict() -> None:
    state = ModelState().with_version("pets", "p.safetensors", SHA_A, exists=False, now=T)
    state = state.with_alias("prod", "pets")
    with pytest.raises(Conflict, match="already a model"):
        state.with_version("pets", "p.safetensors", SHA_A, exists=False, now=T)
    with pytest.raises(NotFound, match="load it first"):
        state.with_version("birds", "b.safetensors", SHA_A, exists=True, now=T)
    with pytest.raises(Conflict, match="already an alias"):
        state.with_version("prod", "b.safetensors", SHA_A, exists=None, now=T)
    with pytest.raises(Invalid, match="must match"):
        state.with_version("zeroshot", "z.safetensors", SHA_A, exists=None, now=T)
    with pytest.raises(Conflict, match="cannot shadow"):
        state.with_alias("pets", "zeroshot")
    with pytest.raises(NotFound, match="no model named 'birds'"):
        state.with_alias("best", "birds")
    with pytest.raises(Conflict, match="target of an alias"):
        state.without_model("pets", fallback_default="zeroshot")
    state = state.with_default("prod")
    with pytest.raises(Conflict, match="default model"):
        state.without_alias("prod", fallback_default="zeroshot")
    with pytest.raises(NotFound, match="no model or alias"):
        state.with_default("nothing")
    only_pets = ModelState().with_version("pets", "p.safetensors", SHA_A, exists=False, now=T)
    with pytest.raises(Conflict, match="the default"):  # the --default-model setting counts too
        only_pets.without_model("pets", fallback_default="pets")


def test_encode_then_parse_is_the_same_state() -> None:
    state = (
        ModelState(generation=4)
        .absorb("flowers.safetensors", SHA_A, now=T)
        .with_version("pets", "versions/p.safetensors", SHA_B, exists=False, now=T)
        .with_alias("prod", "pets")
        .with_default("prod")
    )
    assert parse(encode(state)) == state
    assert json.loads(encode(state))["models"]["pets"] == {
        "file": "versions/p.safetensors",
        "sha256": SHA_B,
        "version": 1,
        "created": T,
    }


def good_document() -> dict:
    return json.loads(encode(ModelState().with_version("pets", "p.safetensors", SHA_A, exists=False, now=T)))


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda d: "{not json", "not valid JSON"),
        (lambda d: [], "not a JSON object"),
        (lambda d: {**d, "format": 2}, "format 2"),
        (lambda d: {**d, "models": []}, "'models' must be an object"),
        (lambda d: {**d, "models": {"pets": {"file": "p.safetensors"}}}, "exactly file, sha256, version"),
        (lambda d: {**d, "models": {"pets": {**d["models"]["pets"], "sha256": "x"}}}, "64 lowercase hex"),
        (lambda d: {**d, "models": {"pets": {**d["models"]["pets"], "file": "../p.safetensors"}}}, "inside"),
        (lambda d: {**d, "models": {"pets": {**d["models"]["pets"], "file": "/p.safetensors"}}}, "inside"),
        (lambda d: {**d, "models": {"pets": {**d["models"]["pets"], "file": "p.bin"}}}, "inside"),
        (lambda d: {**d, "models": {"pets": {**d["models"]["pets"], "version": True}}}, "whole number"),
        (lambda d: {**d, "models": {"pets": {**d["models"]["pets"], "version": 9}}}, "<= numbers.pets"),
        (lambda d: {**d, "aliases": {"prod": "birds"}}, "not a model in the file"),
        (lambda d: {**d, "aliases": {"pets": "zeroshot"}}, "shadows a model"),
        (lambda d: {**d, "default": "birds"}, "neither a model nor an alias"),
        (lambda d: {**d, "models": {"zeroshot": d["models"]["pets"]}}, "not valid"),
    ],
)
def test_a_file_that_is_not_a_state_is_refused_with_the_reason(edit: object, reason: str) -> None:
    document = edit(good_document())  # type: ignore[operator]
    raw = document.encode() if isinstance(document, str) else json.dumps(document).encode()
    with pytest.raises(StateError, match=reason):
        parse(raw)
