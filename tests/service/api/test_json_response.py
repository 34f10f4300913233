"""orjson responses: the JSON starlette's JSONResponse wrote, NaN/inf refused as before."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.responses import JSONResponse

from service.api.app import create_app
from service.api.json_response import ORJSONResponse, dumps

keys = st.one_of(st.text(max_size=8), st.integers(-(2**63), 2**63 - 1), st.booleans(), st.none())
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),  # past 64 bits too: orjson refuses, json.dumps writes them
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),  # any code point: controls, U+2028, astral planes
)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.tuples(inner, inner), st.dictionaries(keys, inner, max_size=4)
    ),
    max_leaves=25,
)


def starlette_render(content: Any, allow_nan: bool = False) -> bytes:
    if not allow_nan:
        return JSONResponse(content).body
    return json.dumps(content, ensure_ascii=False, allow_nan=True, separators=(",", ":")).encode()


@settings(max_examples=600, deadline=None)
@given(documents)
def test_same_json_as_starlette_and_nan_still_refused(content: Any) -> None:
    try:
        expected = starlette_render(content)
    except ValueError:  # NaN or infinity somewhere: JSON has neither
        with pytest.raises(ValueError):
            dumps(content)
        return
    rendered = dumps(content)
    assert json.loads(rendered) == json.loads(expected)
    assert ORJSONResponse(content).body == rendered


@settings(max_examples=300, deadline=None)
@given(documents)
def test_allow_nan_writes_what_json_dumps_wrote(content: Any) -> None:
    rendered, expected = dumps(content, allow_nan=True), starlette_render(content, allow_nan=True)
    assert rendered == expected or json.loads(rendered) == json.loads(expected)  # NaN != NaN: bytes


def test_a_classify_answer_is_byte_identical() -> None:
    answer = {
        "model": {"name": "demo", "version": 3, "method": "coop", "sha256": "ab" * 32},
        "results": [
            {"predictions": [{"label": "chat noir ☕", "score": 0.9834, "cosine": 0.31250001}]},
            {"predictions": [{"label": "dog", "score": 0.5, "cosine": -0.0}]},
        ],
    }
    assert dumps(answer) == JSONResponse(answer).body


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity(value: float) -> None:
    with pytest.raises(ValueError):
        dumps({"score": value})  # as starlette: a 500 with the error shape, never a silent null
    assert (
        dumps({"score": value}, allow_nan=True)
        == json.dumps({"score": value}, separators=(",", ":")).encode()
    )


def test_real_nulls_and_non_str_keys() -> None:
    assert dumps({"a": None, 1: [None], False: 2.0}) == b'{"a":null,"1":[null],"false":2.0}'


def test_the_app_answers_with_orjson_by_default() -> None:
    assert create_app().router.default_response_class is ORJSONResponse
