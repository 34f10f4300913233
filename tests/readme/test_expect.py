"""The README answer patterns: what they accept and, as important, what they refuse."""

from __future__ import annotations

import json

import pytest

from tests.readme.expect import parse_expectation

ANSWER = json.dumps(
    {
        "model": {"name": "world-coop", "version": "1", "method": "coop", "sha256": "ab"},
        "results": [
            {
                "predictions": [
                    {"label": "red star", "score": 0.9, "cosine": 0.3},
                    {"label": "x", "score": 0.1, "cosine": 0.1},
                ]
            }
        ],
    }
)


@pytest.mark.parametrize(
    "line",
    [
        '# -> {"model": {"name": "world-coop", ...}, "results": [{"predictions": [{"label": "red star", ...',
        '# -> 200 {"model": {"name": "world-coop", "version": "1", "method": "coop", "sha256": ...}, '
        '"results": [...]}',
        '# -> 200 {"model": ..., "results": [{"predictions": [{"label": "red star", "score": 0.5, '
        '"cosine": 0.2}, ...]}]}',
        "# -> 200",
        "# ->",
    ],
)
def test_patterns_accept_the_answers_they_show(line: str) -> None:
    assert parse_expectation(line).problems(200, ANSWER) == []


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('# -> {"model": {"name": "zeroshot", ...}, ...}', "'world-coop' != 'zeroshot'"),
        ('# -> {"model": {"name": "world-coop"}, ...}', "not shown"),
        (
            '# -> {"results": [{"predictions": [{"label": "red star", ...}]}], ...}',
            "2 elements, README shows 1",
        ),
        ('# -> {"model": {"version": 1, ...}, ...}', "'1' is not a number"),
        ('# -> {"error": ...}', "no key 'error'"),
        ('# -> {"results": {"predictions": ...}, ...}', "README shows an object"),
        ("# -> 201", "status 200, README shows 201"),
    ],
)
def test_patterns_refuse_other_answers(line: str, problem: str) -> None:
    problems = parse_expectation(line).problems(200, ANSWER)
    assert any(problem in p for p in problems), problems


def test_a_bare_arrow_wants_a_success() -> None:
    assert parse_expectation("# ->").problems(404, "{}") == ["status 404, README shows a success"]
    assert parse_expectation('# -> 404 {"error": ...}').problems(404, '{"error": {"code": 404}}') == []
